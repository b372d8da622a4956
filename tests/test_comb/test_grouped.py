"""Grouped convolutions with a channel shuffle between them (ShuffleNet V1).

A grouped conv's output rows must shrink by as many rows in each conv
group, but which rows may differ from group to group: after a concat, the
next block's grouped conv reads its own groups, which cut the previous
block's conv groups at other offsets. Units are balanced (as many rows of
each unit in every conv group); only where the other ties do not balance
them is row ``j`` of every group tied. masked == pruned == rebuilt == ONNX.
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

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
