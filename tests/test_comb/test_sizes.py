"""Sizes computed in Python from tensor shapes (``C // num_heads``): each
mechanism on a hand-built module (masked == pruned == rebuilt == ONNX), and
attention zoo models through the coverage oracle."""
import os
import warnings

import pytest
import torch
from torch import nn

from mmcpd.testing.coverage import CHECKS, check_model
from mmcpd.comb import trace_groups

from .equivalence import assert_masked_equals_pruned, randomise

slow = pytest.mark.skipif(
    'MMCPD_SLOW' not in os.environ,
    reason='full-size zoo model (minutes): MMCPD_SLOW=1 runs it')


class ResidualAttention(nn.Module):
    """Swin's pattern: the head dim is the residual width over the heads."""

    def __init__(self, width=12, num_heads=3):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (width // num_heads)**-0.5  # at init: a constant
        self.stem = nn.Linear(5, width)
        self.norm = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.head = nn.Linear(width, 4)

    def forward(self, x):
        x = self.stem(x)
        B, N, C = x.shape
        qkv = self.qkv(self.norm(x)).reshape(B, N, 3, self.num_heads,
                                             C // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(-1)
        x = x + self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))
        return self.head(x)


class HeadDim(nn.Module):
    """``C // 4`` by a literal: the four parts never change, so a unit is
    the same index of every part (a head dim), with its 4 residual
    channels; the scale of that dim was computed at init and stays."""

    def __init__(self, width=12):
        super().__init__()
        self.stem = nn.Linear(5, width)
        self.fc = nn.Linear(width, width)
        self.out = nn.Linear(width // 4, 3)
        self.scale = (width // 4)**-0.5

    def forward(self, x):
        x = self.stem(x)
        B, N, C = x.shape
        parts = self.fc(x).view(B, N, 4, C // 4)
        return self.out(parts.sum(2) * self.scale)


class Scaled(nn.Module):
    """The scale computed in forward from the width: pruning would change
    it in the pruned model only."""

    def __init__(self, width=12):
        super().__init__()
        self.stem = nn.Linear(5, width)
        self.out = nn.Linear(width, 3)

    def forward(self, x):
        x = self.stem(x)
        return self.out(x * x.shape[-1]**-0.5)


class AttrScaled(nn.Module):
    """OCRNet's SelfAttentionBlock: a reshape sized by ``self.channels``
    (so the attribute follows the width) and a scale computed from it in
    forward (``self.channels ** -0.5``), which pruning would change in the
    pruned model only."""

    def __init__(self, channels=8):
        super().__init__()
        self.channels = channels
        self.stem = nn.Linear(5, channels)
        self.out = nn.Linear(channels, 3)

    def forward(self, x):
        x = self.stem(x)
        x = x.reshape(x.shape[0], -1, self.channels)
        return self.out(x * self.channels**-0.5)


class Factory(Scaled):
    """A new tensor sized by a width read off another one."""

    def forward(self, x):
        x = self.stem(x)
        return self.out(x + torch.ones(x.shape))


class PatchMerge(nn.Module):
    """Swin's patch merging: ``nn.Unfold`` then a linear reduction."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 1)
        self.unfold = nn.Unfold(2, stride=2)
        self.reduction = nn.Linear(32, 6)

    def forward(self, x):
        return self.reduction(self.unfold(self.stem(x)).transpose(1, 2))


class LeViTLike(nn.Module):
    """LeViT's and TinyViT's attention: q, k, v split per head into uneven
    parts, ``num_heads == key_dim`` (only the attribute that sizes the
    heads may follow them), biases cached by ``train(False)`` as
    ``table[:, idx]``."""

    def __init__(self, num_heads=2, key_dim=2, d=3, tokens=4):
        super().__init__()
        self.num_heads, self.key_dim, self.d = num_heads, key_dim, d
        self.dh = d * num_heads
        self.stem = nn.Linear(5, 6)
        self.qkv = nn.Linear(6, num_heads * (2 * key_dim + d))
        self.biases = nn.Parameter(torch.randn(num_heads, 3))
        self.register_buffer('idx', torch.randint(0, 3, (tokens, tokens)))
        self.proj = nn.Linear(self.dh, 4)

    @torch.no_grad()
    def train(self, mode=True):
        super().train(mode)
        if mode and hasattr(self, 'ab'):
            del self.ab
        elif not mode:
            self.ab = self.biases[:, self.idx]
        return self

    def forward(self, x):
        x = self.stem(x)
        B, N, _ = x.shape
        q, k, v = self.qkv(x).view(B, N, self.num_heads, -1).split(
            [self.key_dim, self.key_dim, self.d], dim=3)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        attn = (q @ k.transpose(-2, -1) + self.ab).softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, self.dh))


class ChannelAttention(nn.Module):
    """DaViT's channel attention: ``k^T v`` is (heads, dim, dim); its second
    dim meets ``q``'s head dim unlabelled, so heads go whole. The qkv bias
    is made from parameters, as in Swin-V2."""

    def __init__(self, width=8, num_heads=2):
        super().__init__()
        self.num_heads = num_heads
        self.stem = nn.Linear(5, width)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.q_bias = nn.Parameter(torch.randn(width))
        self.v_bias = nn.Parameter(torch.randn(width))
        self.proj = nn.Linear(width, 3)

    def forward(self, x):
        x = self.stem(x)
        B, N, C = x.shape
        bias = torch.cat(
            (self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = nn.functional.linear(x, self.qkv.weight, bias)
        heads = self.num_heads
        qkv = qkv.reshape(B, N, 3, heads, C // heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attn = (k.transpose(-1, -2) @ v).softmax(-1)
        x = (attn @ q.transpose(-1, -2)).transpose(-1, -2)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class OneHead(nn.Module):
    """Twins' first stage: one head, ``C // num_heads`` is the residual
    width, and sdpa's default scale ``1 / sqrt(head dim)``."""

    def __init__(self, width=8, scale=None):
        super().__init__()
        self.num_heads, self.scale = 1, scale
        self.stem = nn.Linear(5, width)
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.proj = nn.Linear(width, 3)

    def forward(self, x):
        x = self.stem(x)
        B, N, C = x.shape
        q = self.q(x).reshape(B, N, self.num_heads, C // self.num_heads)
        k, v = self.kv(x).reshape(B, N, 2, self.num_heads,
                                  C // self.num_heads).permute(2, 0, 3, 1, 4)
        x = nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k, v, scale=self.scale)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class HalfSplit(nn.Module):
    """``x.split(C // 2)``: the split handler keeps the halves equal, so
    the computed size stays right."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(5, 12)
        self.a = nn.Linear(6, 3)
        self.b = nn.Linear(6, 3)

    def forward(self, x):
        x = self.stem(x)
        u, v = x.split(x.shape[-1] // 2, -1)
        return self.a(u) + self.b(v)


def _comb(model, x):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        result = trace_groups(model, x)
    return result, [str(w.message) for w in caught]


def _onnx_matches(model, x, tmp_path):
    from mmcpd.deploy import export_onnx, verify_onnx
    path = str(tmp_path / 'pruned.onnx')
    export_onnx(model, x, path)
    diffs = verify_onnx(path, model, x)  # raises when they differ
    assert diffs


def _stem_group(model, x):
    """Comb ``model`` (randomised): no warning, the stem's group."""
    model = randomise(model)
    result, warned = _comb(model, x)
    assert not warned
    stem = next(g for g in result.groups if g.root == 'stem.weight')
    return model, result, stem


def test_heads_follow_the_residual_width(tmp_path):
    x = torch.randn(2, 7, 5)
    model, result, stem = _stem_group(ResidualAttention(), x)
    assert stem.prunable and stem.num_units == 3  # one head: 4 channels
    names = {m.name for m in stem.members}
    assert {'qkv.weight', 'proj.weight', 'norm.weight'} <= names
    pruned, spec = assert_masked_equals_pruned(model, result, x,
                                               {stem.id: [1]})
    assert pruned.num_heads == 2 and spec.attrs['']['num_heads'] == 2
    assert pruned.qkv.weight.shape == (24, 8)
    assert pruned.scale == model.scale
    _onnx_matches(pruned, x, tmp_path)


def test_literal_divisor_prunes_the_head_dim(tmp_path):
    x = torch.randn(2, 7, 5)
    model, result, stem = _stem_group(HeadDim(), x)
    assert stem.prunable and stem.num_units == 3
    out = next(m for m in stem.members if m.name == 'out.weight')
    assert out.counts == (1, 1, 1)
    fc = next(m for m in stem.members if m.name == 'fc.weight' and m.dim == 0)
    assert fc.counts == (4, 4, 4)
    pruned, _ = assert_masked_equals_pruned(model, result, x,
                                            {stem.id: [0, 2]})
    assert pruned.fc.weight.shape == (4, 4) and pruned.out.weight.shape == (
        3, 1)
    assert pruned.scale == model.scale
    _onnx_matches(pruned, x, tmp_path)


@pytest.mark.parametrize('module,culprit', [(Scaled, '`12 ** -0.5`'),
                                            (Factory, '`ones` in `model`')])
def test_untracked_use_of_a_width_freezes_it(module, culprit):
    result, warned = _comb(randomise(module()), torch.randn(2, 7, 5))
    stem = next(g for g in result.groups if g.root == 'stem.weight')
    assert not stem.prunable and culprit in stem.frozen
    assert any(culprit in w for w in warned)


def test_attribute_used_in_arithmetic_is_never_updated():
    result, warned = _comb(randomise(AttrScaled()), torch.randn(2, 7, 5))
    stem = next(g for g in result.groups if g.root == 'stem.weight')
    assert not stem.prunable and '`channels ** -0.5`' in stem.frozen
    assert not [u for u in result.attr_updates if u.attr == 'channels']
    assert any('`channels ** -0.5`' in w for w in warned)


def test_unfold_repeats_each_channel(tmp_path):
    x = torch.randn(2, 3, 8, 8)
    model, result, stem = _stem_group(PatchMerge(), x)
    assert stem.prunable and stem.num_units == 8
    red = next(m for m in stem.members if m.name == 'reduction.weight')
    assert red.units[1] == (4, 5, 6, 7)
    pruned, _ = assert_masked_equals_pruned(model, result, x,
                                            {stem.id: [1, 6]})
    assert pruned.reduction.weight.shape == (6, 24)
    _onnx_matches(pruned, x, tmp_path)


def test_heads_split_unevenly_with_cached_biases(tmp_path):
    x = torch.randn(2, 4, 5)
    model, result, _ = _stem_group(LeViTLike(), x)
    heads = next(g for g in result.groups if g.root == 'qkv.weight')
    assert heads.prunable and heads.num_units == 2
    names = {m.name for m in heads.members}
    assert {'qkv.bias', 'biases', 'proj.weight'} <= names
    updates = {(u.module, u.attr) for u in result.attr_updates}
    assert ('', 'num_heads') in updates and ('', 'dh') in updates
    assert ('', 'key_dim') not in updates
    model.eval()  # the cached biases exist, as in the traced model
    pruned, _ = assert_masked_equals_pruned(model, result, x,
                                            {heads.id: [0]})
    assert pruned.num_heads == 1 and pruned.key_dim == 2
    assert pruned.ab.shape == (1, 4, 4)  # refreshed after slicing
    _onnx_matches(pruned, x, tmp_path)


def test_channel_attention_prunes_whole_heads(tmp_path):
    x = torch.randn(2, 7, 5)
    model, result, stem = _stem_group(ChannelAttention(), x)
    assert stem.prunable and stem.num_units == 2
    pruned, _ = assert_masked_equals_pruned(model, result, x,
                                            {stem.id: [1]})
    assert pruned.num_heads == 1 and pruned.qkv.weight.shape == (12, 4)
    assert pruned.q_bias.shape == pruned.v_bias.shape == (4, )
    _onnx_matches(pruned, x, tmp_path)


def test_default_sdpa_scale_keeps_the_head_dim(tmp_path):
    x = torch.randn(2, 7, 5)
    result, _ = _comb(randomise(OneHead()), x)
    stem = next(g for g in result.groups if g.root == 'stem.weight')
    assert not stem.prunable and 'default scale' in stem.frozen
    model, result, stem = _stem_group(OneHead(scale=0.3), x)
    assert stem.prunable and stem.num_units == 8  # the head dim, 1 by 1
    pruned, _ = assert_masked_equals_pruned(model, result, x,
                                            {stem.id: [0, 5]})
    assert pruned.q.weight.shape == (6, 6)
    _onnx_matches(pruned, x, tmp_path)


def test_split_by_a_computed_size_stays_equal(tmp_path):
    x = torch.randn(2, 5)
    model, result, stem = _stem_group(HalfSplit(), x)
    assert stem.prunable and stem.num_units == 6  # a channel of each half
    pruned, _ = assert_masked_equals_pruned(model, result, x,
                                            {stem.id: [1, 2]})
    assert pruned.a.weight.shape == pruned.b.weight.shape == (3, 4)
    _onnx_matches(pruned, x, tmp_path)


SMALL_SWIN = '''
_base_ = ['mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py']
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=24, depths=[2, 2],
                            num_heads=[3, 6]),
                  img_size=64, window_size=4, pad_small_map=True,
                  out_indices=(1, )),
    head=dict(in_channels=48, num_classes=8))
data_preprocessor = dict(num_classes=8)
'''


def _passes(config, size, min_prunable=0.9, skip=(), iters=0):
    rec = check_model(config, ratio=0.3, size=size, train_iters=iters)
    checks = CHECKS if iters else CHECKS[:-1]
    failed = [
        c for c in checks if not rec['checks'].get(c) and c not in skip
    ]
    assert not failed, f"{config}: {failed} failed: {rec.get('error')}"
    assert rec['prunable_channels'] >= min_prunable, rec['frozen_reasons']
    return rec


def test_small_swin_residual_and_heads_prunable(tmp_path):
    path = tmp_path / 'swin_small.py'
    path.write_text(SMALL_SWIN)
    _passes(str(path), 64, iters=4)  # CPDHook training too


@slow
@pytest.mark.parametrize('config,size,skip', [
    ('mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py', 224, ()),
    # its load_state_dict hook drops buffers, so a strict load (the
    # rebuild check) fails on the unpruned model too
    ('mmpretrain::swin_transformer_v2/swinv2-tiny-w8_16xb64_in1k-256px.py',
     256, ('rebuild', 'onnx')),
    ('mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_'
     'ade20k-512x512.py', 192, ()),
    ('mmpretrain::davit/davit-tiny_4xb256_in1k.py', 224, ()),
    ('mmpretrain::tinyvit/tinyvit-5m_8xb256_in1k.py', 224, ()),
    ('mmpretrain::levit/levit-128s_8xb256_in1k.py', 224, ()),
    ('mmpretrain::twins/twins-pcpvt-small_8xb128_in1k.py', 128, ()),
])
def test_attention_zoo_models(config, size, skip):
    _passes(config, size, skip=skip)
