"""Each op kind on a small hand-built module: groups found, and masked,
pruned and rebuilt models agree numerically."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmcpd.comb import CombResult, trace_groups

from .equivalence import (assert_masked_equals_pruned, random_removal,
                          randomise)


class ConvChain(nn.Module):

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


class Residual(nn.Module):

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 12, 3, padding=1)
        self.a = nn.Conv2d(12, 6, 1)
        self.b = nn.Conv2d(6, 12, 3, padding=1)
        self.down = nn.Conv2d(12, 12, 1)
        self.head = nn.Linear(12, 4)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.b(F.relu(self.a(x)))
        x = F.relu(x) + self.down(x)
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


class Grouped(nn.Module):
    """ResNeXt-style grouped conv, depthwise with a multiplier, SE gate."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 1)
        self.grouped = nn.Conv2d(16, 16, 3, padding=1, groups=4)
        self.c2 = nn.Conv2d(16, 16, 1)
        self.dw = nn.Conv2d(16, 32, 3, padding=1, groups=16)
        self.se1 = nn.Conv2d(32, 8, 1)
        self.se2 = nn.Conv2d(8, 32, 1)
        self.out = nn.Conv2d(32, 6, 1)

    def forward(self, x):
        x = F.relu(self.grouped(self.c1(x)))
        x = F.relu(self.dw(self.c2(x)))
        s = torch.sigmoid(self.se2(F.relu(self.se1(x.mean((2, 3),
                                                          keepdim=True)))))
        return self.out(x * s).mean((2, 3))


class ConcatSplit(nn.Module):

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(3, 6, 1)
        self.fuse = nn.Conv2d(14, 10, 1)
        self.left = nn.Conv2d(5, 4, 1)
        self.right = nn.Conv2d(5, 4, 1)
        self.cls = nn.Conv2d(8, 3, 1)

    def forward(self, x):
        y = torch.cat([F.relu(self.a(x)), self.b(x)], dim=1)
        y = self.fuse(y)
        l, r = y.chunk(2, dim=1)
        z = torch.cat([self.left(l), self.right(r)], 1)
        z = F.interpolate(z, scale_factor=2.0, mode='bilinear')
        return self.cls(F.max_pool2d(z, 2))


class FlattenLinear(nn.Module):

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.gn = nn.GroupNorm(3, 6)
        self.conv2 = nn.Conv2d(6, 5, 3, padding=1)
        self.inorm = nn.InstanceNorm2d(5, affine=True)
        self.fc1 = nn.Linear(5 * 8 * 8, 20)
        self.fc2 = nn.Linear(20, 3)

    def forward(self, x):
        x = F.relu(self.gn(self.conv(x)))
        x = F.relu(self.inorm(self.conv2(x)))
        x = self.fc1(torch.flatten(x, 1))
        return self.fc2(F.relu(x))


class Attention(nn.Module):
    """qkv attention as in timm / mmpretrain: heads from attributes."""

    def __init__(self, dim, heads, explicit):
        super().__init__()
        self.num_heads = heads
        self.head_dims = dim // heads
        self.explicit = explicit
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads,
                                  self.head_dims).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.explicit:
            attn = (q * self.head_dims**-0.5) @ k.transpose(-2, -1)
            x = attn.softmax(dim=-1) @ v
        else:
            x = F.scaled_dot_product_attention(q, k, v)
        x = x.transpose(1, 2).reshape(B, N, self.num_heads * self.head_dims)
        return self.proj(x)


class TinyViT(nn.Module):
    """Tokens, cls token, pos embed, LayerNorm, qkv attention with explicit
    matmuls in one block and SDPA in the other, layer scale, MLP."""

    def __init__(self, dim=24, heads=4, depth=2):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, 4)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 17, dim))
        self.blocks = nn.ModuleList()
        for i in range(depth):
            self.blocks.append(
                nn.ModuleDict(
                    dict(
                        ln1=nn.LayerNorm(dim),
                        attn=Attention(dim, heads, explicit=i == 0),
                        ln2=nn.LayerNorm(dim),
                        fc1=nn.Linear(dim, 2 * dim),
                        fc2=nn.Linear(2 * dim, dim))))
        self.gamma = nn.Parameter(torch.rand(dim))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 7)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1)
        x = x + self.pos_embed
        for blk in self.blocks:
            x = x + blk['attn'](blk['ln1'](x))
            x = x + self.gamma * blk['fc2'](F.gelu(blk['fc1'](blk['ln2'](x))))
        return self.head(self.norm(x)[:, 0])


class TorchMHA(nn.Module):

    def __init__(self, dim=16, heads=4):
        super().__init__()
        self.embed = nn.Linear(5, dim)
        self.attn = nn.MultiheadAttention(dim, heads)
        self.ln = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, 3)

    def forward(self, x):
        x = self.embed(x)  # (L, B, 5) -> (L, B, dim)
        x = x + self.attn(x, x, x, need_weights=False)[0]
        return self.out(self.ln(x))


class SharedModule(nn.Module):
    """A module called twice, on two branches that are added."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 1)
        self.shared = nn.Conv2d(8, 8, 3, padding=1)
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        x = self.stem(x)
        y = self.shared(F.relu(self.shared(x)))
        return self.out(x + y)


IMAGE = (2, 3, 16, 16)
CASES = {
    'conv_chain': (ConvChain, IMAGE),
    'residual': (Residual, IMAGE),
    'grouped_depthwise_se': (Grouped, IMAGE),
    'concat_chunk_resize': (ConcatSplit, IMAGE),
    'flatten_groupnorm_instancenorm': (FlattenLinear, IMAGE),
    'vit_attention': (TinyViT, IMAGE),
    'torch_mha': (TorchMHA, (6, 2, 5)),
    'module_called_twice': (SharedModule, IMAGE),
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_masked_equals_pruned(case):
    cls, shape = CASES[case]
    model = cls().eval()
    x = torch.randn(*shape)
    result = trace_groups(model, x)
    assert result.prunable, f'{case}: nothing prunable'
    removed = random_removal(result)
    assert_masked_equals_pruned(model, result, x, removed)


def _group_of(result, name, dim=0):
    for g in result.groups:
        if any(m.name == name and m.dim == dim for m in g.members):
            return g
    raise KeyError(name)


def test_conv_chain_groups():
    result = trace_groups(ConvChain(), torch.randn(*IMAGE))
    g = _group_of(result, 'conv1.weight')
    names = {(m.name, m.dim, m.role) for m in g.members}
    assert names == {('conv1.weight', 0, 'out'), ('conv1.bias', 0, 'param'),
                     ('bn1.weight', 0, 'param'), ('bn1.bias', 0, 'param'),
                     ('bn1.running_mean', 0, 'param'),
                     ('bn1.running_var', 0, 'param'),
                     ('conv2.weight', 1, 'in')}
    assert g.num_units == 16 and g.prunable
    # the classifier's outputs never shrink
    assert not _group_of(result, 'fc.weight').prunable


def test_residual_ties_both_branches():
    result = trace_groups(Residual(), torch.randn(*IMAGE))
    g = _group_of(result, 'stem.weight')
    members = {m.name for m in g.members}
    assert {'b.weight', 'down.weight', 'head.weight', 'a.weight'} <= members
    assert g.prunable


def test_grouped_and_depthwise_keep_groups_valid():
    model = Grouped().eval()
    x = torch.randn(*IMAGE)
    result = trace_groups(model, x)
    # grouped conv: index j of every group of 4 goes together (4 channels)
    g = _group_of(result, 'c1.weight')
    assert g.num_units == 4 and set(
        len(u) for u in g.members[0].units) == {4}
    # depthwise x2: a unit is one input channel and its two outputs
    dw = _group_of(result, 'c2.weight')
    assert dw.num_units == 16
    removed = {dw.id: [0, 5, 7]}
    pruned, spec = assert_masked_equals_pruned(model, result, x, removed)
    assert pruned.dw.groups == 13 and pruned.dw.out_channels == 26
    assert spec.attrs['dw']['groups'] == 13


def test_groupnorm_removes_whole_groups():
    model = FlattenLinear().eval()
    x = torch.randn(*IMAGE)
    result = trace_groups(model, x)
    g = _group_of(result, 'conv.weight')
    assert g.num_units == 3 and {len(u) for u in g.members[0].units} == {2}
    pruned, _ = assert_masked_equals_pruned(model, result, x, {g.id: [1]})
    assert pruned.gn.num_groups == 2 and pruned.conv2.in_channels == 4


class OneGroupNorm(nn.Module):
    """PoolFormer's norm: GroupNorm with one group over a residual stream."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 12, 3, padding=1)
        self.norm = nn.GroupNorm(1, 12)
        self.mlp = nn.Sequential(nn.Conv2d(12, 24, 1), nn.GELU(),
                                 nn.Conv2d(24, 12, 1))
        self.head = nn.Linear(12, 3)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.mlp(self.norm(x))
        return self.head(x.mean((2, 3)))


def test_one_group_norm_prunes_channel_by_channel():
    """GroupNorm(1, C) normalises over all channels, as a LayerNorm: its
    channels go one by one (they were one unit, the whole stream), the
    masked statistics over the kept channels (exact_norms)."""
    model = randomise(OneGroupNorm()).eval()
    x = torch.randn(*IMAGE)
    result = trace_groups(model, x)
    g = _group_of(result, 'stem.weight')
    assert g.prunable and g.num_units == 12
    assert any(s.kind == 'group_norm' for s in result.norms)
    pruned, _ = assert_masked_equals_pruned(model, result, x,
                                            {g.id: [0, 4, 5, 11]})
    assert pruned.norm.num_groups == 1 and pruned.norm.num_channels == 8


def test_attention_prunes_whole_heads_and_updates_attributes():
    model = TinyViT().eval()
    x = torch.randn(*IMAGE)
    result = trace_groups(model, x)
    heads = [g for g in result.prunable if g.num_units == 4 and any(
        m.name.endswith('qkv.weight') and m.role == 'out'
        for m in g.members)]
    assert len(heads) == 2, 'one head group per block'
    assert {len(u) for u in heads[0].members[0].units} == {3 * 6}
    removed = {heads[0].id: [1], heads[1].id: [1]}
    pruned, spec = assert_masked_equals_pruned(model, result, x, removed)
    for i in range(2):
        assert pruned.blocks[i]['attn'].num_heads == 3
        assert spec.attrs[f'blocks.{i}.attn']['num_heads'] == 3
    # the residual stream is one group with cls token, pos embed, scales
    stream = _group_of(result, 'patch.weight')
    names = {m.name for m in stream.members}
    assert {'cls_token', 'pos_embed', 'gamma', 'norm.weight'} <= names
    assert stream.prunable


def test_layernorm_masking_is_exact():
    """Zeroed channels still count in a plain LayerNorm: exact_norms makes
    the masked model compute the pruned model's statistics."""
    model = TinyViT().eval()
    x = torch.randn(*IMAGE)
    result = trace_groups(model, x)
    stream = _group_of(result, 'patch.weight')
    removed = {stream.id: [0, 3, 9]}
    assert any(s.kind == 'layer_norm' for s in result.norms)
    assert_masked_equals_pruned(model, result, x, removed)


def test_torch_multihead_attention_keeps_width_equal_heads():
    model = TorchMHA().eval()
    x = torch.randn(6, 2, 5)
    result = trace_groups(model, x)
    g = _group_of(result, 'attn.in_proj_weight')
    assert g.num_units == 4
    pruned, spec = assert_masked_equals_pruned(model, result, x, {g.id: [2]})
    assert pruned.attn.num_heads == 3 and pruned.attn.embed_dim == 12


class UnknownOp(nn.Module):

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(8, 8, 1)
        self.c = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        x = self.a(x)
        x = torch.cummax(x, dim=1).values  # mixes channels
        return self.c(F.relu(self.b(x)))


def test_unknown_op_freezes_and_warns():
    model = UnknownOp().eval()
    with pytest.warns(UserWarning, match='no handler for op `cummax`'):
        result = trace_groups(model, torch.randn(*IMAGE))
    a = _group_of(result, 'a.weight')
    assert not a.prunable and 'cummax' in a.frozen
    assert _group_of(result, 'b.weight').prunable


def test_ignore_patterns():
    result = trace_groups(ConvChain(), torch.randn(*IMAGE), ignore=['conv2'])
    assert not _group_of(result, 'conv1.weight').prunable
    assert 'conv2' in _group_of(result, 'conv1.weight').frozen
    with pytest.raises(ValueError, match='nope'):
        trace_groups(ConvChain(), torch.randn(*IMAGE), ignore=['nope'])


def test_untraceable_model_names_module():
    from mmcpd.comb import TraceError
    model = ConvChain()
    with pytest.raises(TraceError, match=r'op `conv2d` in module `conv1`'
                       r'.*pass `forward_fn'):
        trace_groups(model, torch.randn(2, 5, 16, 16))


def test_result_prints_and_round_trips_json():
    result = trace_groups(TinyViT(), torch.randn(*IMAGE))
    text = str(result)
    assert 'prunable' in text and 'qkv.weight' in text
    data = json.loads(result.to_json())
    back = CombResult.from_dict(data)
    assert back.groups == result.groups
    assert back.attr_updates == result.attr_updates
    assert back.norms == result.norms
