"""Channels that become tokens: OCRNet's object context, on small modules.

A class map's channels, gathered over the pixels, become one context row
per class; 1x1 convolutions run over those rows as positions, and an
attention's softmax runs over them. The comb follows the class labels
through the convolutions (kernel 1, stride 1, no padding), so the softmax
over the classes is a channel mix that the masked model computes over the
kept classes only: masked == pruned == rebuilt == ONNX. A kernel wider than
one class mixes neighbouring classes and freezes them.
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmcpd.apis.pruning import comb_model
from mmcpd.comb import trace_groups
from mmcpd.comb.trace import default_forward
from .equivalence import assert_masked_equals_pruned, random_removal, randomise
from .test_structures import _check, _prunable


def _owns(group, name):
    return any(m.name == name and m.role == 'out' for m in group.members)


class ObjectAttention(nn.Module):
    """Pixels attend over the object (class) rows: a softmax over classes.
    """

    def __init__(self, c, key_kernel):
        super().__init__()
        self.query = nn.Conv2d(c, c, 1)
        self.key = nn.Sequential(
            nn.Conv2d(c, c, (key_kernel, 1), padding=(key_kernel // 2, 0)),
            nn.BatchNorm2d(c), nn.ReLU())
        self.value = nn.Conv2d(c, c, 1)

    def forward(self, feats, context):
        b, c, h, w = feats.shape
        query = self.query(feats).view(b, c, -1).permute(0, 2, 1)
        key = self.key(context).view(b, c, -1)
        value = self.value(context).view(b, c, -1).permute(0, 2, 1)
        sim = F.softmax(torch.matmul(query, key), dim=-1)  # over classes
        return torch.matmul(sim, value).permute(0, 2, 1).reshape(b, c, h, w)


class ObjectContext(nn.Module):
    """OCR's gather (softmax over pixels, then classes x pixels @ pixels x
    channels: one context row per class) and object attention."""

    def __init__(self, c=8, classes=6, key_kernel=1):
        super().__init__()
        self.feats = nn.Conv2d(3, c, 3, padding=1)
        self.cls = nn.Conv2d(c, classes, 1)
        self.attn = ObjectAttention(c, key_kernel)
        self.out = nn.Conv2d(c, 4, 1)

    def forward(self, x):
        feats = F.relu(self.feats(x))
        b, c, h, w = feats.shape
        probs = F.softmax(self.cls(feats).view(b, -1, h * w), dim=2)
        context = torch.matmul(probs, feats.view(b, c, -1).permute(0, 2, 1))
        context = context.permute(0, 2, 1).unsqueeze(3)  # (b, c, K, 1)
        return self.out(feats + self.attn(feats, context))


def test_classes_as_tokens_are_pruned_exactly(tmp_path):
    model = ObjectContext()
    x = torch.randn(1, 3, 8, 8)
    result, pruned, _ = _check(model, x, tmp_path, ratio=0.5)
    classes, = [g for g in _prunable(result, 'cls.weight')
                if _owns(g, 'cls.weight')]
    assert classes.num_units == 6  # one class each
    assert pruned.cls.out_channels == 3
    # the softmax over classes is a channel mix of the object attention
    assert any(s.kind == 'softmax' and s.dim == 2 for s in result.norms)


def test_a_kernel_across_classes_freezes_them():
    model = randomise(ObjectContext(key_kernel=3)).eval()
    result = trace_groups(model, torch.randn(1, 3, 8, 8))
    group, = [g for g in result.groups if _owns(g, 'cls.weight')]
    assert 'attn.key.0' in group.frozen and 'mixes labelled positions' in \
        group.frozen


class Cascade(nn.Module):
    """A cascade segmentor's shape (OCRNet): the second head reads the first
    head's class map; each stage's logits meet the labels in a loss."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Conv2d(3, 8, 3, padding=1)
        self.decode_head = nn.ModuleList(
            [nn.Conv2d(8, 5, 1), nn.Conv2d(8 + 5, 5, 1)])

    def extract_feat(self, x):
        return self.backbone(x)

    def _forward(self, x):
        feats = self.extract_feat(x)
        first = self.decode_head[0].forward(feats)  # as mmseg: no hooks
        return self.decode_head[1].forward(torch.cat((feats, first), 1))


def test_every_cascade_stage_keeps_its_classes():
    model = randomise(Cascade()).eval()
    x = torch.randn(1, 3, 8, 8)
    result = comb_model(model, x)
    for name in ('decode_head.0.weight', 'decode_head.1.weight'):
        group, = [g for g in result.groups if _owns(g, name)]
        assert group.frozen == 'model output'
    removed = random_removal(result, 0.5)
    assert_masked_equals_pruned(model, result, x, removed, default_forward)
    assert len(default_forward(model, x)) == 2


@pytest.mark.parametrize('kernel', [1, 3])
def test_classes_through_transposed_conv(kernel):
    """A transposed convolution follows the same rule."""

    class Up(nn.Module):

        def __init__(self):
            super().__init__()
            self.cls = nn.Conv2d(3, 6, 1)
            self.up = nn.ConvTranspose2d(3, 4, (kernel, 1))
            self.out = nn.Linear(4, 2)

        def forward(self, x):
            probs = F.softmax(self.cls(x).flatten(2), dim=2)  # (b, K, hw)
            ctx = torch.matmul(probs, x.flatten(2).transpose(1, 2))
            y = self.up(ctx.transpose(1, 2).unsqueeze(3))  # (b, 3, K', 1)
            return self.out(y.squeeze(3).transpose(1, 2))

    model = randomise(Up()).eval()
    result = trace_groups(model, torch.randn(1, 3, 4, 4))
    group, = [g for g in result.groups if _owns(g, 'cls.weight')]
    frozen = 'conv_transpose2d@up mixes labelled positions'
    assert (group.frozen == frozen) == (kernel == 3)
