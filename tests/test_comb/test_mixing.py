"""Ops that mix channels: exact on the kept channels, or frozen.

A softmax, mean, max, norm, ... over channels reads every channel, so the
masked model (removed channels zeroed but present) would compute something
other than the sliced model. Each mechanism on a small module with every
parameter and buffer random and random units removed: masked == pruned ==
rebuilt, and naive masking (without the exact ops) differs, so the rule is
what makes it pass.
"""
import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmcpd.comb import CombResult, trace_groups
from mmcpd.prune.surgery.mask import zero_units
from mmcpd.prune.surgery.physical import prune_units

from .equivalence import (assert_masked_equals_pruned, random_removal,
                          randomise)

IMAGE = (2, 3, 8, 8)

# op over the channels (dim 1) of a (B, C, H, W) tensor -> a gate of shape
# (B, 1, H, W) or (B, C, H, W)
REDUCTIONS = {
    'mean': lambda y: y.mean(1, keepdim=True),
    'sum': lambda y: torch.sum(y.sigmoid(), dim=1, keepdim=True),
    'var': lambda y: y.var(1, keepdim=True),
    'std': lambda y: torch.std(y, dim=1, keepdim=True),
    # the removed channels' values would win the max / min
    'max': lambda y: (-y.abs() - 0.1).max(dim=1, keepdim=True)[0],
    'min': lambda y: torch.min(y.abs() + 0.1, 1, True).values,
    'amax': lambda y: (-y.abs() - 0.1).amax(1, keepdim=True),
    'amin': lambda y: torch.amin(y.abs() + 0.1, dim=1, keepdim=True),
    'prod': lambda y: (y.sigmoid() + 0.1).prod(1, keepdim=True),
    'median': lambda y: y.median(1, keepdim=True).values,
    'logsumexp': lambda y: y.logsumexp(1, keepdim=True),
    'norm': lambda y: torch.norm(y + 1, p=2, dim=1, keepdim=True),
    'vector_norm': lambda y: torch.linalg.vector_norm(y.relu() + 1, 3, 1,
                                                      True),
    'mean_no_keepdim': lambda y: y.mean(1)[:, None],
    'global_mean': lambda y: y.mean(),
}
KEEPING = {
    'softmax': lambda y: y.softmax(1),
    'log_softmax': lambda y: F.log_softmax(y, dim=1),
    'softmin': lambda y: F.softmin(y, 1),
    'normalize': lambda y: F.normalize(y + 1, dim=1),
    'local_response_norm': lambda y: F.local_response_norm(y.exp(), 3, 1.0),
}


class Mixer(nn.Module):
    """conv -> op over its channels -> gate -> conv."""

    def __init__(self, op):
        super().__init__()
        self.op = op
        self.a = nn.Conv2d(3, 12, 1)
        self.bn = nn.BatchNorm2d(12)
        self.b = nn.Conv2d(12, 4, 1)

    def forward(self, x):
        y = self.bn(self.a(x))
        return self.b(y * torch.sigmoid(self.op(y)))


class Wrapper(nn.Module):

    def __init__(self, op):
        super().__init__()
        self.mixer = Mixer(op)

    def forward(self, x):
        return self.mixer(x)


def _naive(model, result, removed, x):
    masked = copy.deepcopy(model)
    zero_units(masked, result, removed)
    pruned = copy.deepcopy(model)
    prune_units(pruned, result, removed)
    with torch.no_grad():
        a, b = masked(x), pruned(x)
    return (a - b).abs().max() / b.abs().max()


@pytest.mark.parametrize('name', sorted({**REDUCTIONS, **KEEPING}))
def test_mixing_op_is_exact(name):
    op = {**REDUCTIONS, **KEEPING}[name]
    model = randomise(Wrapper(op).eval())
    x = torch.randn(*IMAGE)
    result = trace_groups(model, x)
    group = next(g for g in result.groups
                 if g.members[0].name == 'mixer.a.weight')
    assert group.prunable and group.num_units == 12
    sites = [s for s in result.norms if s.module == 'mixer']
    assert len(sites) == 1 and sites[0].index == 0
    assert sites[0].keeps_dim == (name in KEEPING)
    removed = {group.id: [0, 3, 4, 10]}
    assert_masked_equals_pruned(model, result, x, removed)
    # zeroed channels alone are not enough: the op needs its rule
    assert _naive(model, result, removed, x) > 1e-3


class TwoMeans(nn.Module):
    """Two channel means of two groups in one module, the module called
    twice: each call is found again by its index."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(3, 6, 1)
        self.c = nn.Conv2d(8, 4, 1)
        self.d = nn.Conv2d(6, 4, 1)

    def forward(self, x):
        ya, yb = self.a(x), self.b(x)
        ga = ya.mean(1, keepdim=True)
        gb = yb.mean(1, keepdim=True)
        return self.c(ya * gb) + self.d(yb * ga.exp())


class Twice(nn.Module):

    def __init__(self):
        super().__init__()
        self.m = TwoMeans()

    def forward(self, x):
        return self.m(x) + self.m(x * 2)


def test_several_calls_in_one_module_are_told_apart():
    model = randomise(Twice().eval())
    x = torch.randn(*IMAGE)
    result = trace_groups(model, x)
    sites = sorted((s.index, len(s.channels)) for s in result.norms)
    assert sites == [(0, 8), (1, 6)]
    back = CombResult.from_dict(json.loads(result.to_json()))
    assert back.norms == result.norms
    removed = random_removal(result, 0.5)
    assert len(removed) == 2
    assert_masked_equals_pruned(model, result, x, removed)


class RootMix(nn.Module):
    """A channel softmax in the model's own forward: no module to find it
    by, so its channels are frozen."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(8, 4, 1)
        self.c = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        return self.c(self.b(self.a(x).softmax(1)))


def test_mixing_outside_a_submodule_freezes_and_warns():
    with pytest.warns(UserWarning, match='`softmax` in `model` mixes'):
        result = trace_groups(RootMix(), torch.randn(*IMAGE))
    a = next(g for g in result.groups if g.members[0].name == 'a.weight')
    assert not a.prunable and 'softmax' in a.frozen
    b = next(g for g in result.groups if g.members[0].name == 'b.weight')
    assert b.prunable


class JointMix(nn.Module):

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        y = self.a(x)
        B, C, H, W = y.shape
        s = y.view(B, 2, C // 2, H, W).mean((1, 2))  # two channel dims
        return self.b(y * s[:, None])


class JointWrapper(nn.Module):

    def __init__(self):
        super().__init__()
        self.m = JointMix()

    def forward(self, x):
        return self.m(x)


def test_mixing_several_channel_dims_freezes_and_warns():
    with pytest.warns(UserWarning, match='several channel dims'):
        result = trace_groups(JointWrapper(), torch.randn(*IMAGE))
    a = next(g for g in result.groups if g.members[0].name == 'm.a.weight')
    assert not a.prunable and '`mean` in `m`' in a.frozen


class GRNBlock(nn.Module):
    """ConvNeXt-V2 block: dwconv, LN, pwconv, GELU, GRN, pwconv, residual;
    both of GRN's layouts."""

    def __init__(self, dim=8, channel_last=True):
        super().__init__()
        from mmpretrain.models.utils import GRN
        self.channel_last = channel_last
        self.dw = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pw1 = nn.Linear(dim, 4 * dim)
        self.grn = GRN(4 * dim)
        self.pw2 = nn.Linear(4 * dim, dim)

    def forward(self, x):
        y = self.norm(self.dw(x).permute(0, 2, 3, 1))
        y = F.gelu(self.pw1(y))
        if self.channel_last:
            y = self.grn(y, data_format='channel_last')
        else:
            y = self.grn(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + self.pw2(y).permute(0, 3, 1, 2)


class GRNNet(nn.Module):

    def __init__(self, channel_last):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 2, 2)
        self.block = GRNBlock(8, channel_last)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        return self.head(self.block(self.stem(x)).mean((2, 3)))


@pytest.mark.parametrize('channel_last', [True, False])
def test_grn_with_random_gamma_is_exact(channel_last):
    model = randomise(GRNNet(channel_last).eval())
    assert model.block.grn.gamma.abs().min() > 0
    x = torch.randn(2, 3, 16, 16)
    result = trace_groups(model, x)
    hidden = next(g for g in result.groups
                  if g.members[0].name == 'block.pw1.weight')
    assert hidden.prunable and hidden.num_units == 32
    assert any(s.module == 'block.grn' and s.kind == 'mean'
               for s in result.norms)
    removed = random_removal(result, 0.4)
    assert hidden.id in removed
    assert_masked_equals_pruned(model, result, x, removed)
    assert _naive(model, result, {hidden.id: removed[hidden.id]}, x) > 1e-4


def test_convnext_v2_zoo_grn_masked_equals_pruned():
    """ConvNeXt-V2 atto with every parameter random (GRN's gamma and beta
    start at zero, which hides the divisor of its channel mean)."""
    from mmcpd import comb_model
    from mmcpd.apis import build_model_from_cfg
    from mmcpd.utils.config import load_config
    cfg = load_config(
        'mmpretrain::convnext_v2/convnext-v2-atto_32xb32_in1k.py')
    model = randomise(build_model_from_cfg(cfg).eval())
    x = torch.randn(1, 3, 32, 32)
    result = comb_model(model, x)
    assert not [w for w in result.warnings if 'failed verification' in w
                or 'outside torch' in w or 'mixes' in w]
    grn_sites = [s for s in result.norms if s.module.endswith('.grn')]
    assert len(grn_sites) == 12  # one channel mean per block, 2+2+6+2
    removed = random_removal(result, 0.3, seed=1)
    hidden = [g.id for g in result.prunable
              if g.members[0].name.endswith('pointwise_conv1.weight')]
    assert len(hidden) == 12 and set(hidden) <= set(removed)

    def forward(m, i):
        return m(i, mode='tensor')

    assert_masked_equals_pruned(model, result, x, removed, forward,
                                rtol=1e-4)
