"""mmcv's deformable convolutions in the comb (issue 25): traced as
convolutions (input channels = weight columns, output channels = weight
rows), their offsets and masks frozen, deform groups kept equally wide;
masked == pruned == rebuilt exactly, and the comb's FLOPs are mmengine's
(with the handle :func:`mmcpd.deploy.model_complexity` adds for them)."""
import pytest
import torch
from mmcv.ops import (DeformConv2d, DeformConv2dPack, ModulatedDeformConv2d,
                      ModulatedDeformConv2dPack, deform_conv2d)
from mmcv.ops import deform_conv as mmcv_deform_conv
from mmcv.ops.saconv import SAConv2d
from torch import nn

from mmcpd.comb import trace_groups
from mmcpd.deploy import model_complexity
from mmcpd.prune.cost import model_cost

from .equivalence import (assert_flops_match, assert_masked_equals_pruned,
                          randomise, random_removal)


class TinyDCN(nn.Module):
    """conv -> DCNv1 pack -> DCNv2 pack -> DCN / DCNv2 with offsets (and
    a mask) computed by convs of their own -> a residual add -> head."""

    def __init__(self, deform_groups=1):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.dcn1 = DeformConv2dPack(16, 24, 3, padding=1)
        self.dcn2 = ModulatedDeformConv2dPack(24, 16, 3, padding=1,
                                              deform_groups=deform_groups)
        self.offset = nn.Conv2d(16, 2 * 9 * deform_groups, 3, padding=1)
        self.dcn3 = DeformConv2d(16, 16, 3, padding=1, groups=2,
                                 deform_groups=deform_groups)
        self.offset_mask = nn.Conv2d(16, 3 * 9, 3, padding=1)
        self.dcn4 = ModulatedDeformConv2d(16, 8, 3, stride=2, padding=1)
        self.head = nn.Conv2d(8, 5, 1)

    def forward(self, x):
        x = torch.relu(self.bn(self.stem(x)))
        x = torch.relu(self.dcn2(torch.relu(self.dcn1(x)))) + x
        x = self.dcn3(x, self.offset(x)) + x
        om = self.offset_mask(x)
        x = self.dcn4(x, om[:, :18], om[:, 18:].sigmoid())
        return self.head(torch.relu(x))


def _group(result, name, role):
    return next(g for g in result.groups if any(
        m.name == name and m.role == role for m in g.members))


@pytest.mark.parametrize('deform_groups', [1, 2])
def test_deform_convs_prune_as_convs(deform_groups):
    torch.manual_seed(0)
    model = randomise(TinyDCN(deform_groups).eval())
    x = torch.randn(1, 3, 12, 12)
    result = trace_groups(model, x)
    assert not [w for w in result.warnings if 'outside torch' in w]
    # the DCN rows and the stream they join prune; offset convs keep rows
    dcn1 = _group(result, 'dcn1.weight', 'out')
    assert dcn1.prunable
    assert 'dcn2.weight' in {m.name for m in dcn1.members}
    assert 'dcn2.conv_offset.weight' in {m.name for m in dcn1.members}
    stream = _group(result, 'stem.weight', 'out')
    assert stream.prunable
    names = {m.name for m in stream.members}
    assert {'dcn2.weight', 'dcn3.weight', 'dcn4.weight', 'offset.weight',
            'offset_mask.weight'} <= names
    for name in ('offset.weight', 'offset_mask.weight',
                 'dcn2.conv_offset.weight'):
        assert not any(g.prunable for g in result.groups if any(
            m.name == name and m.role == 'out' for m in g.members))
    assert _group(result, 'dcn4.weight', 'out').prunable
    for seed in range(3):
        removed = random_removal(result, 0.4, seed=seed)
        pruned, spec = assert_masked_equals_pruned(model, result, x,
                                                   removed, rtol=1e-5)
        assert pruned.dcn1.out_channels == pruned.dcn1.weight.shape[0]
        assert pruned.dcn2.in_channels == pruned.dcn2.weight.shape[1]
        assert pruned.dcn3.in_channels == pruned.dcn3.weight.shape[1] * 2
        assert pruned.dcn3.deform_groups == deform_groups
    if deform_groups > 1:  # each deform group keeps as many channels
        kept = pruned.dcn3.in_channels
        assert kept % deform_groups == 0 and kept < 16


def test_flops_match_mmengine():
    model = randomise(TinyDCN().eval())
    x = torch.randn(1, 3, 12, 12)
    result = trace_groups(model, x)
    assert_flops_match(model, result, x, seeds=2)


class Sampling(nn.Module):
    """TOOD's ``deform_sampling``: ``deform_conv2d`` with a computed
    all-ones weight, one group and one deform group per channel."""

    def __init__(self):
        super().__init__()
        self.feat = nn.Conv2d(3, 4, 3, padding=1)
        self.offset = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        f, offset = self.feat(x), self.offset(x)
        c = f.shape[1]
        weight = f.new_ones(c, 1, 1, 1)
        return self.head(deform_conv2d(f, offset, weight, 1, 0, 1, c, c))


def test_computed_weight_freezes_and_is_counted():
    model = randomise(Sampling().eval())
    x = torch.randn(1, 3, 8, 8)
    result = trace_groups(model, x)
    assert not _group(result, 'feat.weight', 'out').prunable
    assert not _group(result, 'offset.weight', 'out').prunable
    cost = model_cost(model, result, 'flops')
    assert cost.total() == pytest.approx(
        model_complexity(model, x)['flops'], rel=1e-6)


def test_functions_restored_after_trace():
    model = TinyDCN().eval()
    trace_groups(model, torch.randn(1, 3, 8, 8))
    assert mmcv_deform_conv.deform_conv2d is deform_conv2d
    assert 'apply' not in vars(mmcv_deform_conv.DeformConv2dFunction)


class Switchable(nn.Module):
    """mmcv's SAConv2d (DetectoRS) with deformable taps: two
    ``deform_conv2d`` on a standardised weight (a computed weight), mixed
    by a one-channel switch; its ``bias`` is never read."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.sac = SAConv2d(16, 16, 3, padding=1, use_deform=True)
        self.head = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        return self.head(torch.relu(self.sac(x)) + x)


def test_switchable_atrous_deform_conv():
    torch.manual_seed(0)
    model = randomise(Switchable().eval())
    x = torch.randn(1, 3, 12, 12)
    result = trace_groups(model, x)
    stream = _group(result, 'stem.weight', 'out')
    assert stream.prunable and {'sac.weight', 'sac.bias'} <= {
        m.name for m in stream.members}
    # the one-channel switch is broadcast over the channels: it stays
    switch = _group(result, 'sac.switch.weight', 'out')
    assert not switch.prunable and switch.frozen.startswith('broadcast')
    cost = model_cost(model, result, 'flops')
    assert cost.total() == pytest.approx(
        model_complexity(model, x)['flops'], rel=1e-6)
    for seed in range(2):
        removed = random_removal(result, 0.4, seed=seed)
        pruned, _ = assert_masked_equals_pruned(model, result, x, removed,
                                                rtol=1e-5)
        assert pruned.sac.bias.shape[0] == pruned.sac.out_channels
        assert cost.total(removed) == pytest.approx(
            model_complexity(pruned, x)['flops'], rel=1e-6)


class Gate(nn.Module):
    """A one-channel gate (a conv with one output row) times a map."""

    def __init__(self):
        super().__init__()
        self.feat = nn.Conv2d(3, 8, 3, padding=1)
        self.gate = nn.Conv2d(3, 1, 3, padding=1)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.head(self.feat(x) * self.gate(x).sigmoid())


def test_one_channel_broadcast_freezes_only_itself():
    model = randomise(Gate().eval())
    x = torch.randn(1, 3, 6, 6)
    result = trace_groups(model, x)
    assert _group(result, 'feat.weight', 'out').prunable
    assert not _group(result, 'gate.weight', 'out').prunable
    removed = random_removal(result, 0.4)
    assert_masked_equals_pruned(model, result, x, removed, rtol=1e-6)
