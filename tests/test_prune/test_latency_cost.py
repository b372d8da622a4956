"""Measured latency as a cost: interpolation, monotone widths, errors.

The tables are written by hand (no timing), on the real layer list of a
toy net, so every number the cost gives can be checked.
"""
import numpy as np
import pytest
import torch

import mmcpd
from mmcpd.comb import trace_groups
from mmcpd.deploy.latency_table import collect_layers
from mmcpd.prune.cost import model_cost
from mmcpd.prune.cost.latency import LatencyCost, interpolate, monotone
from .toy import ToyNet

X = torch.randn(1, 3, 8, 8)
#: ms by (in, out) grid index per layer: conv2 is slower at out=12 than at
#: out=16 (as real kernels are at odd widths), and fc no faster at in=12.
MS = {
    'conv1.weight': [[1.0, 1.5, 2.0]],
    'conv2.weight': [[1.0, 2.5, 2.0], [2.0, 4.0, 3.0], [3.0, 5.0, 4.0]],
    'fc.weight': [[0.1], [0.2], [0.2]],
}


def _table(model, rest_ms=0.0, ms=None):
    layers = collect_layers(model, X)
    for layer in layers:
        layer['grid_out'] = [8, 12, 16] if layer['out'] == 16 else [
            layer['out']]
        layer['grid_in'] = [8, 12, 16] if layer['in'] == 16 else [
            layer['in']]
        layer['ms'] = (ms or MS)[layer['param']]
    full = sum(layer['ms'][-1][-1] for layer in layers)
    return dict(model_ms=full + rest_ms, rest_ms=rest_ms, layers=layers)


@pytest.fixture
def toy():
    torch.manual_seed(0)
    model = ToyNet(16, 16).eval()
    return model, trace_groups(model, X)


def test_monotone_is_the_min_over_wider_widths():
    got = monotone([[5.0, 3.0], [4.0, 6.0]])
    assert got.tolist() == [[3.0, 3.0], [4.0, 6.0]]
    rng = np.random.default_rng(0)
    ms = monotone(rng.random((4, 5)))
    assert (np.diff(ms, axis=0) >= 0).all() and (np.diff(ms, axis=1) >=
                                                 0).all()


def test_interpolation_is_bilinear_and_flat_outside():
    ms = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert interpolate([8, 16], [8, 16], ms, 12, 12) == 2.5
    assert interpolate([8, 16], [8, 16], ms, 16, 10) == 3.25
    assert interpolate([8, 16], [8, 16], ms, 4, 4) == 1.0


def test_total_is_the_tables_sum_at_the_kept_widths(toy):
    model, result = toy
    cost = model_cost(model, result, 'latency', table=_table(model))
    by_group = {g.members[0].name: g.id for g in result.prunable}
    assert cost.total() == pytest.approx(2.0 + 4.0 + 0.2)
    # conv1 out 8 (conv2 in 8), conv2 out 12 (fc in 12): monotone tables
    removed = {
        by_group['conv1.weight']: list(range(8)),
        by_group['conv2.weight']: [0, 5, 6, 9],
    }
    assert cost.total(removed) == pytest.approx(1.0 + 2.0 + 0.2)
    # between grid widths: interpolated (conv1 out 10: 1.25, conv2 (10, 16)
    # 2.5, fc 0.2)
    removed = {by_group['conv1.weight']: list(range(6))}
    assert cost.total(removed) == pytest.approx(1.25 + 2.5 + 0.2)


def test_the_rest_scales_with_the_proxy_and_unit_costs_add_up(toy):
    model, result = toy
    cost = model_cost(model, result, 'latency', table=_table(model, 1.0))
    assert cost.total() == pytest.approx(7.2)
    # a move goes down to the next allowed width (12 for conv1 and 8 for
    # conv2, which is no faster at 12); the table is linear on the way,
    # and so is the proxy
    _unit_costs_add_up(cost, result)


def _unit_costs_add_up(cost, result):
    """Each group's next move saves what its units' costs add up to."""
    for group in result.prunable:
        below = max(w for w in cost.allowed_widths(group) if w < 16)
        units = list(range(16 - below))
        saved = cost.total() - cost.total({group.id: units})
        got = cost.unit_costs()[group.id][units].sum().item()
        assert got == pytest.approx(saved, rel=1e-9)
        assert saved > 0


def test_a_width_slower_than_a_wider_one_is_never_chosen(toy):
    model, result = toy
    table = _table(model)
    cost = model_cost(model, result, 'latency', table=table, round_to=4)
    conv2 = next(g for g in result.prunable
                 if g.members[0].name == 'conv2.weight')
    # conv2 and fc are no faster at 12 than at 16; below 8 they are flat
    assert cost.allowed_widths(conv2) == {16, 8}
    spec, _ = mmcpd.prune_model(
        model, X, target=0.3, metric='latency', round_to=4,
        latency_table=table, result=result, closed_loop=False)
    c1, c2 = model.conv1.out_channels, model.conv2.out_channels
    assert c2 in (16, 8) and c1 % 4 == 0
    grid = [8, 12, 16]
    after = (interpolate([3], grid, monotone(MS['conv1.weight']), 3, c1) +
             interpolate(grid, grid, monotone(MS['conv2.weight']), c1, c2) +
             interpolate(grid, [3], monotone(MS['fc.weight']), c2, 3))
    assert after <= 0.7 * cost.total() + 1e-9


def test_a_table_of_another_model_is_named(toy):
    _, result = toy
    other = ToyNet(16, 24).eval()
    table = _table(ToyNet(16, 16))
    with pytest.raises(ValueError, match='`conv2.weight`.*16, 16.*24, 16'):
        model_cost(other, trace_groups(other, X), 'latency', table=table)
    with pytest.raises(ValueError, match='needs a latency table'):
        model_cost(other, trace_groups(other, X), 'latency')
    with pytest.raises(ValueError, match='`table`'):
        LatencyCost({}, (), dict(layers=[]), {})


def test_prune_model_measures_the_table_when_none_is_given(toy,
                                                           monkeypatch):
    from mmcpd.deploy import latency_table as lt

    model, result = toy
    calls = []

    def measured(m, inputs, **kwargs):
        calls.append(kwargs)
        return _table(m)

    monkeypatch.setattr(lt, 'latency_table', measured)
    mmcpd.prune_model(model, X, target=0.3, metric='latency', round_to=4,
                      latency_table=dict(threads=3), result=result,
                      closed_loop=False)
    assert calls == [dict(threads=3, forward=None)]
    assert model.conv2.out_channels in (16, 8)
    with pytest.raises(ValueError, match="`metric`.*'latency_proxy'"):
        mmcpd.prune_model(model, X, target=0.3, metric='latncy',
                          result=result)


def test_calibration_fits_measured_ratios_and_keeps_unit_costs(toy):
    model, result = toy
    cost = model_cost(model, result, 'latency', table=_table(model, 1.0))
    conv1, conv2 = (g.id for g in result.prunable[:2])
    l0, r0 = cost.shares()
    assert l0 + r0 == pytest.approx(1.0) and r0 > 0

    def truth(removed):  # 30% fixed, layers half as much as tabled
        lay, rest = cost.shares(removed)
        return 0.3 + 0.35 * lay / l0 + 0.35 * rest / r0

    samples = [({conv1: list(range(k)), conv2: list(range(j))}, 0.0)
               for k, j in ((4, 8), (8, 0), (0, 4))]
    samples = [(r, truth(r)) for r, _ in samples]
    shares = cost.calibrate(samples)
    assert shares == pytest.approx((0.35, 0.35, 0.3), abs=1e-9)
    removed = {conv1: [0, 1, 2, 3, 4, 5], conv2: [1, 2]}
    assert cost.total(removed) / cost.total() == pytest.approx(
        truth(removed))
    # the ranking's unit costs are what the calibrated total saves
    _unit_costs_add_up(cost, result)
    with pytest.raises(ValueError, match='`samples`'):
        cost.calibrate([])
