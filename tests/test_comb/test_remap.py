"""remap: the comb result of a cut model, without tracing it again."""
import pytest
import torch

from mmcpd.apis import build_model_from_cfg
from mmcpd.comb.pipeline import trace_groups
from mmcpd.comb.remap import remap
from mmcpd.prune.cost import model_cost
from mmcpd.prune.surgery.physical import prune_units
from mmcpd.utils.config import load_config


def _canon(result):
    """Groups of more than one unit as comparable data: unit count and
    members (name, dim, role, indices, counts)."""
    return {(g.num_units,
             tuple(sorted((m.name, m.dim, m.role, m.index, m.counts)
                          for m in g.members)))
            for g in result.groups if g.num_units > 1}


@pytest.mark.parametrize('cfg, size', [
    ('mmpretrain::resnet/resnet18_8xb32_in1k.py', 32),
    ('mmpretrain::deit/deit-tiny_4xb256_in1k.py', 32),
    ('mmseg::fcn/fcn_r18-d8_4xb2-80k_cityscapes-512x1024.py', 32),
])
def test_remap_equals_combing_the_cut_model(cfg, size):
    model = build_model_from_cfg(load_config(cfg)).eval()
    x = torch.randn(1, 3, size, size)
    result = trace_groups(model, x)
    gen = torch.Generator().manual_seed(0)
    removed = {}
    for group in result.prunable:
        k = int(torch.randint(0, group.num_units - 1, (1, ), generator=gen))
        if k:
            removed[group.id] = sorted(
                torch.randperm(group.num_units, generator=gen)[:k].tolist())
    assert removed
    cost = {m: model_cost(model, result, m).total(removed)
            for m in ('params', 'flops')}
    prune_units(model, result, removed)
    mapped = remap(result, removed)
    assert _canon(mapped) == _canon(trace_groups(model, x))
    for metric, total in cost.items():
        assert model_cost(model, mapped, metric).total() == \
            pytest.approx(total, rel=1e-9)
    assert [g.id for g in mapped.groups] == [g.id for g in result.groups]


def test_remap_refuses_units_that_do_not_exist():
    from mmcpd.comb import CombResult, CoupledGroup, Member
    group = CoupledGroup(0, (Member('w', 0, 'out', (0, 1), (1, 1)), ), 2)
    result = CombResult((group, ))
    with pytest.raises(ValueError, match='units of group 0 should be in'):
        remap(result, {0: [2]})
    with pytest.raises(ValueError, match='leave a unit'):
        remap(result, {0: [0, 1]})
    with pytest.raises(ValueError, match='but got group 3'):
        remap(result, {3: [0]})
