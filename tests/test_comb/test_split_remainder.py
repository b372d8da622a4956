"""A split by one tracked size whose last piece is a smaller remainder.

EdgeNeXt's SDTA block splits its width by ``self.conv_channels`` (34, 34,
32 for 100 channels): the full pieces must stay equal, the remainder no
wider than them and never empty. Each unit takes position ``i`` of every
piece; the unit of the remainder's last position also takes the full
pieces' surplus positions, so ``conv_channels`` drops unit by unit by
different amounts. masked == pruned == rebuilt == ONNX, whichever units go.
"""
import copy
import json
import math

import pytest
import torch
from torch import nn

from mmcpd.apis.pruning import comb_model
from mmcpd.comb import CombResult
from mmcpd.comb.remap import remap
from mmcpd.prune.surgery.physical import prune_units
from .equivalence import assert_masked_equals_pruned, randomise
from .test_structures import _check, _prunable


class SplitRemainder(nn.Module):
    """EdgeNeXt's split: depthwise convs on the full pieces, each adding
    the previous one's output, the remainder passed through."""

    def __init__(self, c=10, scales=3):
        super().__init__()
        self.conv_channels = int(math.ceil(c / scales))
        self.num_convs = scales - 1
        self.proj_in = nn.Conv2d(3, c, 1)
        self.convs = nn.ModuleList(
            nn.Conv2d(self.conv_channels, self.conv_channels, 3, padding=1,
                      groups=self.conv_channels)
            for _ in range(self.num_convs))
        self.norm = nn.LayerNorm(c)
        self.proj_out = nn.Conv2d(c, 4, 1)

    def forward(self, x):
        x = self.proj_in(x)
        spx = torch.split(x, self.conv_channels, dim=1)
        sp = out = self.convs[0](spx[0])
        for i in range(1, self.num_convs):
            sp = self.convs[i](sp + spx[i])
            out = torch.cat((out, sp), 1)
        x = torch.cat((out, spx[self.num_convs]), 1) + x
        x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.proj_out(x)


@pytest.mark.parametrize('ratio', [0.3, 0.6])
def test_split_with_a_remainder(ratio, tmp_path):
    model = SplitRemainder()  # 4, 4, 2
    x = torch.randn(1, 3, 8, 8)
    result, pruned, _ = _check(model, x, tmp_path, ratio=ratio)
    group, = _prunable(result, 'proj_in.weight')
    # position 0 of every piece, and position 1 with the surplus 2, 3
    assert group.num_units == 2
    counts = [m for m in group.members if m.name == 'proj_in.weight'][0]
    assert sorted(counts.counts) == [3, 7]
    width = pruned.proj_in.out_channels
    assert width in (3, 7) and pruned.conv_channels == (width + 2) // 3
    update, = [u for u in result.attr_updates if u.attr == 'conv_channels']
    assert update.per_unit == ((group.id, (1, 3)), )


def test_split_with_a_wide_remainder(tmp_path):
    model = SplitRemainder(c=14)  # 5, 5, 4
    x = torch.randn(1, 3, 8, 8)
    result, pruned, _ = _check(model, x, tmp_path, ratio=0.5)
    group, = _prunable(result, 'proj_in.weight')
    assert group.num_units == 4
    sizes = [p.shape[1] for p in torch.split(
        torch.zeros(1, pruned.proj_in.out_channels), pruned.conv_channels,
        1)]
    assert len(sizes) == 3 and sizes[0] == sizes[1] >= sizes[2] > 0


def test_remap_and_json_keep_unit_amounts():
    """A second prune step on the remapped result (as CPDHook takes them)
    and the result's JSON form keep the amounts unit by unit."""
    model = randomise(SplitRemainder(c=14)).eval()  # 5, 5, 4: units 1 1 1 2
    x = torch.randn(1, 3, 8, 8)
    result = comb_model(model, x, forward_fn=lambda m, i: m(i))
    group, = _prunable(result, 'proj_in.weight')
    update, = [u for u in result.attr_updates if u.attr == 'conv_channels']
    assert update.per_unit == ((group.id, (1, 1, 1, 2)), )
    again = CombResult.from_dict(json.loads(result.to_json()))
    assert again.attr_updates == result.attr_updates
    pruned = copy.deepcopy(model)
    prune_units(pruned, result, {group.id: [3]})  # the surplus unit
    assert pruned.conv_channels == 3
    cut = remap(result, {group.id: [3]})
    update, = [u for u in cut.attr_updates if u.attr == 'conv_channels']
    assert update.old == 3 and update.per_unit == ((group.id, (1, 1, 1)), )
    # a second step, on the pruned model and the remapped result
    assert_masked_equals_pruned(pruned, cut, x, {group.id: [0]})
