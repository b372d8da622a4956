"""Grouped convolutions with a channel shuffle between them (ShuffleNet V1).

A grouped conv's output rows must shrink by as many rows in each conv
group, but which rows may differ from group to group: after a concat, the
next block's grouped conv reads its own groups, which cut the previous
block's conv groups at other offsets. Units are balanced (as many rows of
each unit in every conv group); only where the other ties do not balance
them is row ``j`` of every group tied. The grouped conv after a shuffle
keeps other input columns in each conv group (``Member.groups``): the
shuffle's slabs land across its conv group boundaries, and are gathered
into balanced units. masked == pruned == rebuilt == ONNX.
"""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmcpd.prune.surgery.optim_state import shrink_optimizer
from mmcpd.prune.surgery.physical import prune_units
from mmcpd.prune.importance.units import UnitMap
from mmcpd.prune.surgery.verify import random_units
from .test_structures import _check


def shuffle(x, groups):
    b, c, h, w = x.shape
    x = x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous()
    return x.view(b, -1, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNet V1's unit: grouped 1x1, depthwise 3x3, shuffle, grouped
    1x1; added to the input, or concatenated with it (pooled) where the
    width grows."""

    def __init__(self, cin, cout, first=False, groups=3):
        super().__init__()
        self.concat, self.groups = cin != cout, groups
        mid, out = cout // 4, cout - cin if cin != cout else cout
        self.compress = nn.Sequential(
            nn.Conv2d(cin, mid, 1, groups=1 if first else groups),
            nn.BatchNorm2d(mid), nn.ReLU())
        self.dw = nn.Sequential(
            nn.Conv2d(mid, mid, 3, 2 if self.concat else 1, 1, groups=mid),
            nn.BatchNorm2d(mid))
        self.expand = nn.Sequential(
            nn.Conv2d(mid, out, 1, groups=groups), nn.BatchNorm2d(out))

    def forward(self, x):
        out = self.expand(shuffle(self.dw(self.compress(x)), self.groups))
        if self.concat:
            return torch.cat((F.avg_pool2d(x, 3, 2, 1), F.relu(out)), 1)
        return F.relu(x + out)


class ShuffleV1Like(nn.Module):

    def __init__(self, stem=6, width=60):
        super().__init__()
        self.stem = nn.Conv2d(3, stem, 3, padding=1)
        self.units = nn.Sequential(
            ShuffleUnit(stem, width, first=True), ShuffleUnit(width, width),
            ShuffleUnit(width, 2 * width), ShuffleUnit(2 * width, 2 * width))
        self.fc = nn.Linear(2 * width, 5)

    def forward(self, x):
        return self.fc(self.units(self.stem(x)).mean((2, 3)))


def _units(result, name):
    """Row indices of ``name`` that each unit of a prunable group owns."""
    found = []
    for g in result.prunable:
        for m in g.members:
            if m.name == name and m.role == 'out':
                found += m.units
    assert found, f'no prunable group owns rows of {name}'
    return found


def _balanced(units, per_group):
    for unit in units:
        counts = np.bincount(np.asarray(unit) // per_group, minlength=3)
        assert len(set(counts.tolist())) == 1, unit


def test_balanced_rows_at_other_offsets(tmp_path):
    model = ShuffleV1Like()
    x = torch.randn(1, 3, 8, 8)
    result, pruned, _ = _check(model, x, tmp_path, ratio=0.5)
    units = _units(result, 'units.0.expand.0.weight')  # 3 groups of 18
    _balanced(units, 18)
    # some unit takes other rows in each conv group: the old rule (row j
    # of every group) tied the whole residual stream into one unit

    def offsets(unit):
        return {frozenset(u % 18 for u in unit if u // 18 == k)
                for k in range(3)}

    assert any(len(offsets(unit)) > 1 for unit in units)
    for unit in pruned.units:
        for conv in (unit.compress[0], unit.expand[0]):
            assert conv.out_channels % conv.groups == 0
    assert pruned.units[0].expand[0].out_channels < 54


def test_grouped_rows_tied_where_nothing_balances_them(tmp_path):
    """Bottlenecks of 3 x 3 channels: a shuffle's slabs are balanced only
    by taking row ``j`` of every group (and its shuffled partners)."""
    model = ShuffleV1Like(stem=12, width=72)
    x = torch.randn(1, 3, 8, 8)
    result, pruned, _ = _check(model, x, tmp_path, ratio=0.5)
    units = _units(result, 'units.2.compress.0.weight')  # 3 groups of 12
    _balanced(units, 12)
    assert pruned.units[2].compress[0].out_channels < 36


def _columns_kept(old, new, groups):
    """Per conv group, the input columns of ``old`` that the first row of
    that group in ``new`` kept (found by value: the weights are random)."""
    kept = []
    for h in range(groups):
        row = new[h * (new.shape[0] // groups)]
        per = old.shape[0] // groups
        for candidate in old[h * per:(h + 1) * per]:
            cols = [next((j for j in range(old.shape[1])
                          if torch.equal(candidate[j], v)), None)
                    for v in row]
            if None not in cols:
                kept.append(tuple(cols))
                break
    assert len(kept) == groups
    return kept


@pytest.mark.parametrize(
    'width', [240, 120], ids=['20-per-group', '10-per-group'])
def test_shuffled_bottleneck_keeps_other_columns_per_group(tmp_path, width):
    """ShuffleNet V1's bottleneck (``width / 4`` channels, 3 conv groups):
    the shuffle's slabs (channel ``j`` of every conv group) land at 3
    consecutive inputs of the expanding conv, across its conv group
    boundaries (20 or 10 per group is no multiple of 3). Slabs are gathered
    into balanced units, and the expanding conv keeps other columns in each
    conv group: the bottleneck prunes (it was one unit)."""
    model = ShuffleV1Like(stem=12, width=width)
    x = torch.randn(1, 3, 8, 8)
    result, pruned, _ = _check(model, x, tmp_path, ratio=0.4)
    mid = width // 4
    group, = [g for g in result.prunable if any(
        m.name == 'units.1.compress.0.weight' and m.role == 'out'
        for m in g.members)]
    assert group.num_units >= 3
    member, = [m for m in group.members
               if m.name == 'units.1.expand.0.weight']
    assert (member.dim, member.role, member.groups) == (1, 'in', 3)
    assert member.size == mid
    _balanced(member.units, mid // 3)
    conv = pruned.units[1].expand[0]
    assert conv.in_channels < mid and conv.in_channels % 3 == 0
    # the removed inputs are not the same columns in every conv group
    old = model.units[1].expand[0].weight.detach()
    new = conv.weight.detach()
    assert len(set(_columns_kept(old, new, 3))) > 1


def test_grouped_columns_follow_the_optimizer_and_importance():
    """A grouped conv's per-group columns: the optimizer's state is cut as
    its parameter is, and per-unit sums count each unit's columns in the
    rows of their own conv group only."""
    from mmcpd.apis.pruning import comb_model
    model = ShuffleV1Like(stem=12, width=240).eval()
    x = torch.randn(1, 3, 8, 8)
    result = comb_model(model, x, forward_fn=lambda m, i: m(i))
    name = 'units.1.expand.0.weight'
    weight = dict(model.named_parameters())[name]
    group, = [g for g in result.prunable
              if any(m.name == name and m.groups > 1 for m in g.members)]
    member, = [m for m in group.members if m.name == name]
    # importance: a sum of ones over each unit's entries of the weight
    units = UnitMap([group], {name: weight.shape})
    sums = units.unit_sums({name: torch.ones_like(weight)})[:-1]
    rows = weight.shape[0] // 3
    assert sums.tolist() == [float(c * rows) for c in member.counts]
    # optimizer: SGD momentum, set to the weights plus one, is cut alike
    replaced = {}
    removed = random_units(result, 0.4, seed=3)
    assert removed.get(group.id)
    pruned = copy.deepcopy(model)
    optimizer = torch.optim.SGD(pruned.parameters(), lr=0.1, momentum=0.9)
    for p in pruned.parameters():
        optimizer.state[p]['momentum_buffer'] = p.detach().clone() + 1
    prune_units(pruned, result, removed, replaced)
    shrink_optimizer(optimizer, replaced)
    for p in pruned.parameters():
        assert torch.equal(optimizer.state[p]['momentum_buffer'], p + 1)
    new = dict(pruned.named_parameters())[name]
    assert new.shape[1] < weight.shape[1]


def test_unbalanced_columns_are_refused_naming_the_weight():
    """Input channels that would leave conv groups of different widths
    (a hand-made removal the comb's units never give) are refused, with
    the weight named, before anything is cut."""
    from mmcpd.prune.surgery.positions import kept_columns
    cols = kept_columns((6, 4, 1, 1), 1, {1, 5}, groups=2, name='c.weight')
    assert cols.tolist() == [[0, 2, 3]] * 3 + [[0, 2, 3]] * 3
    assert kept_columns((6, 4, 1, 1), 1, {0, 7}, 2).tolist() == \
        [[1, 2, 3]] * 3 + [[0, 1, 2]] * 3
    with pytest.raises(ValueError, match=r'`c.weight` would keep \[3, 4\]'):
        kept_columns((6, 4, 1, 1), 1, {1}, groups=2, name='c.weight')
