import torch

from mmcpd.comb.group import CoupledGroup, Member
from mmcpd.prune.importance.units import UnitMap


def test_unit_sums_with_multi_index_units_and_any_dim():
    # group 0: units of two channels each (like heads), on dim 0 of `a`
    # and dim 1 of `b`; group 1: dim 2 of `b`, one index left out
    g0 = CoupledGroup(0, (Member('a', 0, 'out', (3, 1, 0, 2), (2, 2)),
                          Member('b', 1, 'in', (0, 1, 2, 3), (2, 2))), 2)
    g1 = CoupledGroup(1, (Member('b', 2, 'param', (4, 0, 2), (1, 2)), ), 2)
    values = {'a': torch.randn(4, 5), 'b': torch.randn(3, 4, 5, 2)}
    umap = UnitMap([g0, g1], {k: v.shape for k, v in values.items()})
    sums = umap.split(umap.unit_sums(values)[:-1])
    a, b = values['a'], values['b']
    expected0 = torch.stack([
        a[[3, 1]].sum() + b[:, [0, 1]].sum(),
        a[[0, 2]].sum() + b[:, [2, 3]].sum()
    ])
    expected1 = torch.stack([b[:, :, 4].sum(), b[:, :, [0, 2]].sum()])
    torch.testing.assert_close(sums[0], expected0)
    torch.testing.assert_close(sums[1], expected1)
    assert umap.total == 4
