"""The width rule: kept widths stay on the vectorised kernels."""
import copy
import warnings

import pytest
import torch
from torch import nn

import mmcpd
from mmcpd.prune.surgery.verify import randomize_model
from mmcpd.prune.widths import (units_to_remove, warn_whole, whole_groups,
                                width_quanta)

X = torch.randn(1, 3, 16, 16)


class Net(nn.Module):
    """A stem of 40 channels, a grouped conv (4 groups of 16), a depthwise
    conv of 64, a narrow squeeze of 6 and a head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 40, 3, padding=1),
                                  nn.BatchNorm2d(40), nn.ReLU())
        self.expand = nn.Conv2d(40, 64, 1)
        self.grouped = nn.Conv2d(64, 64, 3, padding=1, groups=4)
        self.dw = nn.Conv2d(64, 64, 3, padding=1, groups=64)
        self.squeeze = nn.Conv2d(64, 6, 1)
        self.excite = nn.Conv2d(6, 64, 1)
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        x = self.expand(self.stem(x)).relu()
        x = self.dw(self.grouped(x).relu())
        gate = self.excite(self.squeeze(x.mean((2, 3), keepdim=True)).relu())
        return self.head((x * gate.sigmoid()).mean((2, 3)))


@pytest.fixture(scope='module')
def combed():
    torch.manual_seed(0)
    model = randomize_model(Net().eval(), 0)
    return model, mmcpd.comb_model(model, X)


def _group_of(result, name):
    return next(g for g in result.prunable if g.root == f'{name}.weight')


def test_quanta_align_wide_groups_and_each_conv_group(combed):
    model, result = combed
    quanta = width_quanta(model, result.prunable, 8)
    assert quanta[_group_of(result, 'stem.0').id] == 8
    assert quanta[_group_of(result, 'squeeze').id] == 1  # narrower than 8
    grouped_in = _group_of(result, 'expand')  # 4 conv groups of 16 inputs
    assert quanta[grouped_in.id] % 8 == 0
    # free widths: every multiple is 1
    assert set(width_quanta(model, result.prunable, 1).values()) == {1}


def test_grouped_convs_keep_whole_blocks_of_8_at_round_to_4(combed):
    """onnxruntime runs a grouped conv blocked only with whole blocks of 8
    per group: ``round_to=4`` keeps 4s elsewhere, 8s per conv group."""
    model, result = combed
    quanta = width_quanta(model, result.prunable, 4)
    assert quanta[_group_of(result, 'stem.0').id] == 4
    assert quanta[_group_of(result, 'squeeze').id] == 4  # 6 channels
    grouped_in = _group_of(result, 'expand')  # 4 conv groups of 16 inputs
    assert quanta[grouped_in.id] == 4 * 8  # 8 per conv group, 4 groups
    pruned = copy.deepcopy(model)
    mmcpd.prune_model(pruned, X, ratio=0.6, round_to=4, result=result)
    grouped = pruned.grouped
    assert grouped.in_channels // grouped.groups == 8  # 16 -> 8, not 4
    assert pruned.stem[0].out_channels % 4 == 0


def test_prune_model_default_keeps_aligned_widths(combed):
    model, result = combed
    pruned = copy.deepcopy(model)
    mmcpd.prune_model(pruned, X, ratio=0.3, result=result)
    assert pruned.stem[0].out_channels == 32  # 40 - 30% = 28 -> 32
    grouped = pruned.grouped
    # the grouped conv keeps 8 of 16 channels per group (in and out)
    assert grouped.in_channels // grouped.groups % 8 == 0
    assert grouped.out_channels // grouped.groups % 8 == 0
    assert pruned.dw.out_channels % 8 == 0
    assert pruned.squeeze.out_channels == 5  # narrow: free
    with torch.no_grad():
        assert pruned(X).shape == model(X).shape
    free = copy.deepcopy(model)
    mmcpd.prune_model(free, X, ratio=0.3, round_to=1, result=result)
    assert free.stem[0].out_channels == 28


@pytest.mark.parametrize('n,per_unit,quantum,ratio,removed', [
    (40, 1, 8, 0.3, 8),   # keep 28 -> nearest multiple 32
    (16, 1, 8, 0.3, 8),   # keep 11.2 -> 8
    (12, 1, 8, 0.1, 4),   # keep 11 -> 8: never rounded up to all 12
    (8, 1, 8, 0.3, 0),    # one multiple: kept whole (warned)
    (6, 1, 1, 0.3, 1),    # free
    (6, 64, 64, 0.3, 1),  # heads of 64 channels go one by one
    (40, 1, 16, 0.3, 8),  # keep 28 -> 32
])
def test_units_to_remove(n, per_unit, quantum, ratio, removed):
    from mmcpd.comb.group import CoupledGroup, Member
    index = tuple(range(n * per_unit))
    group = CoupledGroup(0, (Member('w', 0, 'out', index, (per_unit, ) * n),
                             ), n)
    assert units_to_remove(group, ratio, quantum) == removed


def test_groups_kept_whole_are_named(combed):
    model, result = combed
    group = _group_of(result, 'stem.0')  # 40 channels
    quanta = {group.id: 64}
    assert whole_groups([group], quanta) == [group]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        warn_whole([group], quanta)
    assert 'stem.0.weight' in str(caught[0].message)
    with pytest.raises(ValueError, match='`round_to` should be'):
        width_quanta(model, result.prunable, 0)


@pytest.mark.parametrize('order,ratio,removed', [
    # ShuffleNet V1's 20 per conv group: 6 units of 9 channels, one of 6
    ([0, 1, 2, 3, 4, 5, 6], 0.3, 4),   # keeps 24, the only multiple of 8
    ([6, 0, 1, 2, 3, 4, 5], 0.3, 0),   # no prefix keeps a multiple of 8
    ([0, 6, 1, 2, 3, 4, 5], 0.4, 0),   # 51, 45, 36, 27, 18, 9: none
])
def test_mixed_widths_keep_a_multiple_of_the_quantum(order, ratio, removed):
    from mmcpd.comb.group import CoupledGroup, Member
    from mmcpd.prune.selection import select_ratio
    from mmcpd.prune.widths import mixed_prefix
    channels = [9] * 6 + [6]
    assert mixed_prefix(channels, order, ratio, 8) == removed
    group = CoupledGroup(0, (Member('w', 0, 'out', tuple(range(60)),
                                    tuple(channels)), ), 7)
    scores = torch.empty(7)
    scores[torch.tensor(order)] = torch.arange(7.)  # lowest goes first
    got = select_ratio([group], {0: scores}, ratio, round_to=8)
    assert sorted(got.get(0, [])) == sorted(order[:removed])
    if removed:
        assert (60 - sum(channels[u] for u in got[0])) % 8 == 0
