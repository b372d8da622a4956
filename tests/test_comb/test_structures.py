"""Structures of conv and mixed models: each mechanism on a small module.

Random draws in the forward (SegNeXt's Hamburger), splits by a module's
width attribute (Res2Net), equal parts cut by slices and channel shuffle
(ShuffleNet V2), re-parameterisable multi-branch blocks (RepVGG, MobileOne)
in both their training and deploy forms. Each: the group is prunable after
verification, and masked == pruned == rebuilt == ONNX.
"""
import copy
import json
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmcpd.apis.pruning import comb_model
from mmcpd.comb import trace_groups
from mmcpd.prune.spec import PrunedSpec, apply_spec
from mmcpd.prune.surgery.verify import same_random
from .equivalence import assert_masked_equals_pruned, random_removal, randomise


def _prunable(result, *names):
    """The prunable groups with a member of each of ``names``."""
    found = []
    for name in names:
        groups = [
            g for g in result.prunable
            if any(m.name == name for m in g.members)
        ]
        assert groups, f'no prunable group has `{name}`:\n{result}'
        found += groups
    return found


def _check_onnx(pruned, x, tmp_path):
    from mmcpd.deploy import export_onnx, verify_onnx
    path = export_onnx(pruned, x, osp.join(str(tmp_path), 'pruned.onnx'))
    verify_onnx(path, pruned, x)


def _check(model, x, tmp_path, ratio=0.3, onnx=True):
    """Verified comb, random removal, masked == pruned == rebuilt (== ONNX).
    """
    randomise(model)
    model.eval()
    result = comb_model(model, x, forward_fn=lambda m, i: m(i))
    removed = random_removal(result, ratio)
    pruned, spec = assert_masked_equals_pruned(model, result, x, removed)
    if onnx:
        _check_onnx(pruned, x, tmp_path)
    return result, pruned, spec


class RandomBases(nn.Module):
    """A matrix decomposition started from random bases on every call, as
    SegNeXt's Hamburger head does in eval mode."""

    def __init__(self, c=8):
        super().__init__()
        self.pre = nn.Conv2d(3, c, 1)
        self.post = nn.Conv2d(c, 4, 1)
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.mix = nn.Conv2d(6, c, 1)

    def forward(self, x):
        feat = self.mix(F.relu(self.stem(x)))
        y = self.pre(x) + feat
        b, c, h, w = y.shape
        bases = F.normalize(torch.rand(b, c, 3), dim=1)
        coef = torch.softmax(y.flatten(2).transpose(1, 2) @ bases, dim=-1)
        return self.post((bases @ coef.transpose(1, 2)).view(b, c, h, w))


def test_random_draws_in_forward_do_not_fail_verification():
    model = randomise(RandomBases()).eval()
    x = torch.randn(1, 3, 8, 8)
    with same_random(3):
        a = model(x)
    with same_random(3):
        b = model(x)
    assert torch.equal(a, b)
    result = comb_model(model, x, forward_fn=lambda m, i: m(i))
    # the stem's channels never meet the random bases: prunable; the
    # channels that do are frozen by the tracer, not by verification
    stem, = _prunable(result, 'stem.weight')
    assert stem.num_units == 6
    frozen = [g for g in result.groups if g.frozen]
    assert frozen and not any('verification' in g.frozen for g in frozen)
    assert_masked_equals_pruned(model, result, x, {stem.id: [0, 4]})


class Res2Like(nn.Module):
    """Res2Net's split by ``self.width`` with a hierarchy of 3x3 convs."""

    def __init__(self, width=4, scales=3):
        super().__init__()
        self.width, self.scales = width, scales
        self.conv1 = nn.Conv2d(8, width * scales, 1)
        self.convs = nn.ModuleList(
            nn.Conv2d(width, width, 3, padding=1) for _ in range(scales - 1))
        self.conv3 = nn.Conv2d(width * scales, 8, 1)

    def forward(self, x):
        spx = torch.split(F.relu(self.conv1(x)), self.width, 1)
        sp = out = self.convs[0](spx[0])
        for i in range(1, self.scales - 1):
            sp = self.convs[i](sp + spx[i])
            out = torch.cat((out, sp), 1)
        out = torch.cat((out, spx[-1]), 1)
        return self.conv3(out) + x


def test_split_by_width_attribute(tmp_path):
    model = Res2Like()
    x = torch.randn(1, 8, 8, 8)
    result, pruned, _ = _check(model, x, tmp_path, ratio=0.5)
    split, = _prunable(result, 'conv1.weight')
    assert split.num_units == 4  # one channel of every piece
    assert pruned.width == 2 and pruned.conv1.out_channels == 6


class ShuffleV2Like(nn.Module):
    """ShuffleNet V2's unit: a split by slices whose bound comes from the
    shape, one half through convs, concat and channel shuffle."""

    def __init__(self, c=16, blocks=2):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(c // 2, c // 2, 1), nn.BatchNorm2d(c // 2),
                nn.ReLU(), nn.Conv2d(c // 2, c // 2, 3, padding=1,
                                     groups=c // 2), nn.BatchNorm2d(c // 2))
            for _ in range(blocks))
        self.head = nn.Conv2d(c, 5, 1)

    @staticmethod
    def shuffle(x, groups):
        b, c, h, w = x.shape
        x = x.view(b, groups, c // groups, h, w).transpose(1, 2)
        return x.contiguous().view(b, -1, h, w)

    def forward(self, x):
        x = self.stem(x)
        for branch in self.branches:
            c = x.shape[1] // 2 + x.shape[1] % 2
            x1, x2 = x[:, :c], x[:, c:]
            x = self.shuffle(torch.cat((x1, branch(x2)), 1), 2)
        return self.head(x)


def test_equal_parts_by_slices_and_channel_shuffle(tmp_path):
    model = ShuffleV2Like()
    x = torch.randn(1, 3, 8, 8)
    result, pruned, _ = _check(model, x, tmp_path)
    stem, = _prunable(result, 'stem.weight')
    assert stem.num_units > 1
    assert all('slice' not in (g.frozen or '') for g in result.groups)
    shapes = [b[0].weight.shape[0] for b in pruned.branches]
    assert len(set(shapes)) == 1 and shapes[0] < 8


def test_fixed_slice_bound_is_caught():
    """A bound written in the code looks like halves to the tracer;
    verification finds that the pruned model breaks and freezes it."""

    class Fixed(nn.Module):

        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 1)
            self.b = nn.Conv2d(4, 5, 1)
            self.c = nn.Conv2d(4, 5, 1)

        def forward(self, x):
            y = self.a(x)
            return self.b(y[:, :4]) + self.c(y[:, 4:])

    model = randomise(Fixed()).eval()
    x = torch.randn(1, 3, 4, 4)
    traced = trace_groups(model, x, forward_fn=lambda m, i: m(i))
    group, = _prunable(traced, 'a.weight')
    assert group.num_units == 4
    result = comb_model(model, x, forward_fn=lambda m, i: m(i))
    assert 'failed verification' in result.groups[group.id].frozen


def _deployed(model):
    model = copy.deepcopy(model)
    for m in list(model.modules()):
        if hasattr(m, 'switch_to_deploy') and hasattr(m, 'deploy'):
            m.switch_to_deploy()
    return model


@pytest.mark.parametrize('kind', ['repvgg', 'mobileone'])
def test_reparameterisable_blocks_train_and_deploy_forms(kind, tmp_path):
    """All branches of a block shrink together; the pruned block fuses
    into one conv of the pruned widths (its ``in_channels``,
    ``out_channels`` and depthwise ``groups`` follow), which computes what
    the pruned training form does, in torch and in ONNX."""
    from mmpretrain.models.backbones.mobileone import MobileOneBlock
    from mmpretrain.models.backbones.repvgg import RepVGGBlock
    if kind == 'repvgg':
        blocks = [RepVGGBlock(8, 8), RepVGGBlock(8, 12, stride=2),
                  RepVGGBlock(12, 12)]
    else:
        blocks = [
            MobileOneBlock(8, 8, 3, num_convs=2, groups=8),
            MobileOneBlock(8, 12, 1, num_convs=2, padding=0),
            MobileOneBlock(12, 12, 3, num_convs=2, groups=12)
        ]
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), *blocks,
                          nn.Conv2d(12, 5, 1))
    x = torch.randn(1, 3, 8, 8)
    result, pruned, _ = _check(model, x, tmp_path, ratio=0.4)
    assert len(result.prunable) == 2  # 8 and 12 wide, every branch in it
    block = pruned[3]
    assert block.in_channels == block.out_channels < 12
    if kind == 'mobileone':
        assert block.groups == block.in_channels
    deployed = _deployed(pruned)
    assert all(getattr(m, 'deploy', True) for m in deployed.modules())
    with torch.no_grad():
        want, got = pruned(x), deployed(x)
    assert ((want - got).abs().max() / want.abs().max()) < 1e-4
    _check_onnx(deployed, x, tmp_path)


class GnConvLike(nn.Module):
    """HorNet's gnConv: uneven splits by a list attribute and a recursive
    gating with projections between the pieces."""

    def __init__(self, dim=16, order=3):
        super().__init__()
        self.order = order
        self.dims = [dim // 2**i for i in range(order)][::-1]
        self.proj_in = nn.Conv2d(dim, 2 * dim, 1)
        self.dwconv = nn.Conv2d(sum(self.dims), sum(self.dims), 3,
                                padding=1, groups=sum(self.dims))
        self.projs = nn.ModuleList(
            nn.Conv2d(self.dims[i], self.dims[i + 1], 1)
            for i in range(order - 1))
        self.proj_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x):
        y, x = torch.split(self.proj_in(x), (self.dims[0], sum(self.dims)),
                           dim=1)
        dw_list = torch.split(self.dwconv(x), self.dims, dim=1)
        x = y * dw_list[0]
        for i in range(self.order - 1):
            x = self.projs[i](x) * dw_list[i + 1]
        return self.proj_out(x)


def test_uneven_split_by_list_attribute(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 16, 1), GnConvLike(), nn.ReLU(),
                          nn.Conv2d(16, 5, 1))
    x = torch.randn(1, 3, 8, 8)
    result, pruned, spec = _check(model, x, tmp_path, ratio=0.5)
    gn = pruned[1]
    sizes = sorted(g.num_units for g in result.prunable if any(
        m.name == '1.proj_in.weight' and m.role == 'out'
        for m in g.members))
    assert sizes == [4, 8, 16]  # y with the first piece, then each piece
    assert list(gn.dims) == [2, 4, 8]
    assert gn.proj_in.out_channels == 2 + 2 + 4 + 8
    # the list attribute survives the spec's JSON form
    spec = PrunedSpec.from_dict(json.loads(spec.to_json()))
    rebuilt = apply_spec(copy.deepcopy(model), spec)
    rebuilt.load_state_dict(pruned.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt(x), pruned(x))


def _zoo(config, **changes):
    from mmcpd.apis import build_model_from_cfg
    from mmcpd.utils.config import load_config
    cfg = load_config(config)
    for path, value in changes.items():
        node = cfg.model
        *parents, last = path.split('.')
        for p in parents:
            node = node[p]
        node[last] = value
    return randomise(build_model_from_cfg(cfg).eval())


def _zoo_check(model, x):
    """Verified comb: nothing fails verification and only what the model's
    outputs force stays frozen; masked == pruned == rebuilt."""
    from mmcpd.comb.trace import default_forward
    result = comb_model(model, x)
    assert not [w for w in result.warnings if 'verification' in w]
    frozen = {g.frozen for g in result.groups if g.frozen}
    removed = random_removal(result, 0.3, seed=1)
    assert_masked_equals_pruned(model, result, x, removed, default_forward)
    return result, frozen


def test_segnext_zoo_small():
    """Every MSCAN / LightHamHead group passes verification; only the
    channels meeting the Hamburger's random bases and the logits stay."""
    model = _zoo(
        'mmseg::segnext/segnext_mscan-t_1xb16-adamw-160k_ade20k-512x512.py',
        **{'backbone.embed_dims': [8, 16, 24, 32],
           'backbone.depths': [1, 1, 1, 1],
           'backbone.mlp_ratios': [2, 2, 2, 2],
           'decode_head.in_channels': [16, 24, 32],
           'decode_head.channels': 32, 'decode_head.ham_channels': 32,
           'decode_head.num_classes': 5})
    result, frozen = _zoo_check(model, torch.randn(1, 3, 64, 64))
    assert len(frozen) == 2 and 'model output' in frozen
    # the channels that size or meet the Hamburger's random bases
    assert [f for f in frozen if 'decode_head.hamburger' in f]


def test_hornet_zoo_small():
    """gnConv's pieces and projections are all prunable."""
    model = _zoo(
        'mmpretrain::hornet/hornet-tiny_8xb128_in1k.py',
        **{'backbone.arch': dict(base_dim=8, depths=[1, 1, 1, 1],
                                 orders=[2, 3, 4, 5],
                                 dw_cfg=[dict(type='DW', kernel_size=7)] *
                                 4),
           'head.in_channels': 64, 'head.num_classes': 5})
    result, frozen = _zoo_check(model, torch.randn(1, 3, 32, 32))
    assert frozen == {'model output'}
    assert model.backbone.stages[3][0].gnconv.dims == [4, 8, 16, 32, 64]


class ImageConcat(nn.Module):
    """CGNet concatenates the (downsampled) input image with features."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.fuse = nn.Conv2d(8 + 3, 6, 1)
        self.head = nn.Conv2d(6, 4, 1)

    def forward(self, x):
        y = torch.cat([F.relu(self.stem(x)), x], 1)
        return self.head(F.relu(self.fuse(y)))


def test_concat_with_the_image(tmp_path):
    result, pruned, _ = _check(ImageConcat(), torch.randn(1, 3, 8, 8),
                               tmp_path)
    stem, = _prunable(result, 'stem.weight')
    assert stem.num_units == 8
    assert pruned.fuse.in_channels == pruned.stem.out_channels + 3
