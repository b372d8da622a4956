"""Grouped transposed convolutions (Grid R-CNN's grid head: ``deconv1/2``
with one group per grid point; issue 25): the comb freezes them and used to
count none of their multiply-adds, so its FLOPs fell short of mmengine's
counter by theirs (0.977 on Grid R-CNN). Now both count ``numel(x) *
weight[1] * k`` for them, before and after pruning the layers around."""
import copy

import pytest
import torch
from torch import nn

from mmcpd.comb import trace_groups
from mmcpd.deploy import model_complexity
from mmcpd.prune.cost import model_cost
from mmcpd.prune.surgery.physical import prune_units
from mmcpd.prune.surgery.verify import random_units, randomize_model


class GridHead(nn.Module):
    """A conv, then two grouped deconvs as Grid R-CNN's (the second one with
    one output channel per group), a plain one and a 1d one."""

    def __init__(self, groups=3):
        super().__init__()
        self.conv = nn.Conv2d(3, 4 * groups, 3, padding=1)
        self.deconv1 = nn.ConvTranspose2d(4 * groups, 4 * groups, 4,
                                          stride=2, padding=1, groups=groups)
        self.deconv2 = nn.ConvTranspose2d(4 * groups, groups, 4, stride=2,
                                          padding=1, groups=groups)
        self.plain = nn.ConvTranspose2d(3, 5, 3, stride=2)
        self.mid = nn.Conv2d(5, 6, 1)
        self.line = nn.ConvTranspose1d(6, 4, 3, groups=2)

    def forward(self, x):
        y = self.deconv2(self.deconv1(self.conv(x)).relu())
        z = self.mid(self.plain(x))
        return y, self.line(z.flatten(2))


@pytest.mark.parametrize('groups', [1, 3])
def test_grouped_conv_transpose_flops_match_mmengine(groups):
    model = randomize_model(GridHead(groups), 0).eval()
    x = torch.randn(1, 3, 5, 5)
    result = trace_groups(model, x)
    cost = model_cost(model, result, 'flops')
    reference = model_complexity(model, x)['flops']
    by_hand = (3 * 25 * 4 * groups * 9  # conv
               + 4 * groups * 25 * 4 * 16  # deconv1: numel(x) * 4 * k
               + 4 * groups * 100 * 1 * 16  # deconv2
               + 3 * 25 * 5 * 9  # plain deconv
               + 5 * 121 * 6  # mid
               + 6 * 121 * 2 * 3)  # line: numel(x) * 4 / 2 * k
    assert reference == by_hand
    assert cost.total() == pytest.approx(reference, rel=1e-9)
    assert result.prunable, 'the conv and the plain deconv prune'
    for seed in range(3):
        removed = random_units(result, 0.4, seed=seed)
        small = copy.deepcopy(model)
        prune_units(small, result, removed)
        assert cost.total(removed) == pytest.approx(
            model_complexity(small, x)['flops'], rel=1e-9)
