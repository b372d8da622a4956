"""The measured width rule: each group's multiple and floor follow the
latency table's width windows (round_to / min_channels = 'measured')."""
import copy
import math
import re
import warnings

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import mmcpd
from mmcpd.apis import build_model_from_cfg
from mmcpd.deploy import latency_table as lt
from mmcpd.prune.selection import Guards, select_units
from mmcpd.prune.settings import PruneSettings
from mmcpd.prune.surgery.positions import unit_channels
from mmcpd.prune.widths import (QUANTA, measured_curve, measured_floor,
                                measured_quantum, measured_rule, with_quanta)
from mmcpd.utils.config import load_config

X = torch.randn(1, 3, 32, 32)


def padded(widths, block, floor=1, base=0.0, per=0.02):
    """A kernel that pads to ``block`` and costs the same below ``floor``."""
    return [base + per * math.ceil(max(w, floor) / block) * block
            for w in widths]


@pytest.mark.parametrize('block', [1, 2, 4, 8, 16])
def test_quantum_is_the_kernels_block(block):
    widths = list(range(1, 49))
    assert measured_quantum(widths, padded(widths, block), full=48) == block
    # the same steps in a window half way up a wide layer
    window = list(range(1, 17)) + list(range(112, 129))
    assert measured_quantum(window, padded(window, block), full=256) \
        == block


def test_fallback_widths_and_the_tolerance():
    widths = list(range(1, 49))
    # NCHWc at multiples of 4, several times slower off them (depthwise)
    ms = [0.01 * w if w % 4 == 0 else 0.05 * w for w in widths]
    assert measured_quantum(widths, ms, full=48) == 4
    # a linear kernel with noise under the tolerance stays free
    rng = np.random.default_rng(0)
    noisy = [0.1 * w * (1 + 0.01 * rng.standard_normal()) for w in widths]
    assert measured_quantum(widths, noisy, full=48) == 1


@pytest.mark.parametrize('floor', [1, 4, 8, 16])
def test_floor_is_where_narrower_stops_being_faster(floor):
    widths = list(range(1, 49))
    ms = padded(widths, 1, floor=floor)
    assert measured_floor(widths, ms) == floor
    # a layer that keeps getting faster fed by one that does not: the sum
    # is faster at every narrower width
    feeder = [0.05 + 0.01 * w for w in widths]
    summed = [a + b for a, b in zip(ms, feeder)]
    assert measured_floor(widths, summed, layers=2) < max(floor, 2)


def narrow_resnet18():
    """CIFAR ResNet-18 at a quarter width: stages of 16 to 128 channels."""
    cfg = load_config('mmpretrain::resnet/resnet18_8xb16_cifar10.py')
    cfg.model.backbone.update(stem_channels=16, base_channels=16)
    cfg.model.head.in_channels = 128
    torch.manual_seed(0)
    return build_model_from_cfg(cfg).eval()


@pytest.fixture(scope='module')
def narrow():
    model = narrow_resnet18()
    return model, mmcpd.comb_model(model, X)


def fake_timer(block, floor=1):
    """``_time_files`` that reads each one-layer graph's widths and returns
    a kernel padded to ``block`` channels on both axes, flat below
    ``floor``; a model file takes 1 ms."""

    def time_files(paths, *args, **kwargs):
        out = []
        for path in paths:
            graph = onnx.load(path).graph
            weight = [i for i in graph.initializer if i.name == 'W']
            if len(graph.node) != 1 or not weight:
                out.append(1.0)
                continue
            w_out, w_in = weight[0].dims[:2]
            cost = [math.ceil(max(w, floor) / block) * block
                    for w in (w_out, w_in)]
            out.append(1e-3 * cost[0] * cost[1])
        return [(t, 0.0) for t in out] if kwargs.get('split') else out

    return time_files


def faked_table(model, tmp_path, monkeypatch, block, floor=1):
    with monkeypatch.context() as patch:
        patch.setattr(lt, '_time_files', fake_timer(block, floor))
        return lt.latency_table(model, X, threads=1, points=2,
                                budget_s=0.01, widths=True,
                                cache=str(tmp_path / f'b{block}f{floor}'))


def _covered(result, table):
    layers = {layer['param']: layer for layer in table['layers']}
    return [g for g in result.prunable
            if measured_curve(g, layers)[0] is not None]


@pytest.mark.parametrize('block', [1, 4, 16])
def test_the_rule_follows_the_tables_timings(narrow, tmp_path, monkeypatch,
                                             block):
    model, result = narrow
    table = faked_table(model, tmp_path, monkeypatch, block)
    quanta, floors = measured_rule(model, result.prunable, table)
    covered = _covered(result, table)
    assert len(covered) == len(result.prunable)  # plain convs: all
    # a padded kernel's widths under one block cost the same: the floor
    assert {floors[g.id] for g in covered} == {block}
    assert {quanta[g.id] for g in covered
            if floors[g.id] < sum(unit_channels(g))} == {block}
    # the pruned model keeps those multiples
    pruned = copy.deepcopy(model)
    mmcpd.prune_model(pruned, X, target=0.5, round_to='measured',
                      latency_table=table, result=result)
    widths = {m.out_channels for m in pruned.modules()
              if isinstance(m, nn.Conv2d)}
    assert all(w % block == 0 for w in widths), (block, widths)
    if block == 1:  # free: some width falls off the multiples of 8
        assert any(w % 8 for w in widths)


def test_floors_follow_the_table(narrow, tmp_path, monkeypatch):
    model, result = narrow
    table = faked_table(model, tmp_path, monkeypatch, 1, floor=12)
    quanta, floors = measured_rule(model, result.prunable, table)
    assert set(floors.values()) == {12} and set(quanta.values()) == {1}
    pruned = copy.deepcopy(model)
    mmcpd.prune_model(pruned, X, target=0.7, round_to='measured',
                      min_channels='measured', latency_table=table,
                      result=result)
    widths = [m.out_channels for m in pruned.modules()
              if isinstance(m, nn.Conv2d)]
    assert min(widths) >= 12 and min(widths) < 16
    # unreachable under the floors: the message names them and what would
    with pytest.raises(ValueError, match="min_channels='measured'") as err:
        mmcpd.prune_model(copy.deepcopy(model), X, target=0.88,
                          round_to='measured', min_channels='measured',
                          max_ratio=1.0, latency_table=table, result=result)
    hint = re.search(r'; (.*) would allow ([0-9.]+)', str(err.value))
    assert hint and 'min_channels=1' in hint.group(1)
    assert float(hint.group(2)) >= 0.88


def test_groups_the_windows_do_not_cover_keep_the_fixed_rule(
        narrow, tmp_path, monkeypatch):
    model, result = narrow
    table = faked_table(model, tmp_path, monkeypatch, 1)
    stem = next(g for g in result.prunable
                if g.root == 'backbone.conv1.weight')
    for layer in table['layers']:
        if layer['param'] in {m.name for m in stem.members}:
            layer.pop('widths', None)
    quanta, floors = measured_rule(model, result.prunable, table)
    assert quanta[stem.id] == 8 and floors[stem.id] == 1
    # and a table without any window is refused
    bare = dict(table, layers=[{k: v for k, v in layer.items()
                                if k != 'widths'}
                               for layer in table['layers']])
    with pytest.raises(ValueError, match='widths=True'):
        measured_rule(model, result.prunable, bare)
    with pytest.raises(ValueError, match='latency table'):
        with_quanta(Guards(round_to='measured'), model, result.prunable)


def test_measured_guards_must_be_resolved(narrow):
    model, result = narrow
    cost = mmcpd.prune.cost.model_cost(model, result, 'flops')
    scores = {g.id: torch.rand(g.num_units) for g in result.prunable}
    with pytest.raises(ValueError, match='with_quanta'):
        select_units(result.prunable, scores, cost, {}, 0.3,
                     Guards(round_to='measured'))


def test_settings_check_and_ask_for_the_windows():
    settings = PruneSettings(0.5, 'flops', round_to='measured',
                             latency_table=dict(threads=1))
    assert settings.needs_table
    assert settings.latency_table == dict(threads=1, widths=True)
    assert PruneSettings(0.5, min_channels='measured').latency_table == \
        dict(widths=True)
    assert not PruneSettings(0.5, 'flops').needs_table
    for key, bad in (('round_to', 'measure'), ('round_to', 0),
                     ('min_channels', 0.5)):
        with pytest.raises(ValueError, match=f"`{key}` should be an int "
                           ">= 1 or 'measured'"):
            PruneSettings(0.5, **{key: bad})


def test_real_table_on_this_machine(narrow, tmp_path):
    """Real timings (a tiny budget): whatever this CPU's kernels do, the
    rule picks a multiple of ``QUANTA``, a floor within the window, and the
    pruned model keeps both."""
    model, result = narrow
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # a busy machine warns
        table = lt.latency_table(model, X, threads=1, points=2,
                                 budget_s=0.01, widths=True,
                                 cache=str(tmp_path))
    quanta, floors = measured_rule(model, result.prunable, table)
    for group in result.prunable:
        assert quanta[group.id] in QUANTA
        assert 1 <= floors[group.id] <= min(QUANTA[-1],
                                            sum(unit_channels(group)))
    guards = with_quanta(Guards(min_channels='measured', round_to='measured'),
                         model, result.prunable, table)
    assert guards.round_to == guards.quanta == quanta
    assert guards.min_channels == floors
    pruned = copy.deepcopy(model)
    mmcpd.prune_model(pruned, X, target=0.5, round_to='measured',
                      min_channels='measured', latency_table=table,
                      result=result)
    with torch.no_grad():
        assert pruned(X).shape == model(X).shape


def test_without_the_floors_no_width_goes_under_them(narrow, tmp_path,
                                                     monkeypatch):
    model, result = narrow
    table = faked_table(model, tmp_path, monkeypatch, 1, floor=12)
    # min_channels=1 would let a group under its floor of 12: the multiple
    # becomes the first of QUANTA at or above it
    quanta, _ = measured_rule(model, result.prunable, table, min_channels=1)
    assert set(quanta.values()) == {min(q for q in QUANTA if q >= 12)}
    quanta, _ = measured_rule(model, result.prunable, table,
                              min_channels=12)
    assert set(quanta.values()) == {1}
