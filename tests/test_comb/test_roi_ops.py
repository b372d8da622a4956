"""Ops of detection heads that the tracer could not follow (issue 25, item
3): mmcv's RoIAlign/RoIPool (C++), RoI features scattered into a
``new_zeros`` buffer, a slice that drops constant channels, sizes read by
``torch._shape_as_tensor``, ``torch.gather``. Each passes channels where it
is a pass-through; masked == pruned with every parameter randomised and
random units removed.
"""
import pytest
import torch
import torch.nn.functional as F
from mmcv.ops import RoIAlign
from torch import nn

from mmcpd.comb import trace_groups

from .equivalence import (assert_masked_equals_pruned, random_removal,
                          randomise)

IMAGE = (2, 3, 16, 16)


def _group(result, name):
    return next(g for g in result.groups
                if any(m.name == name and m.role == 'out'
                       for m in g.members))


class RoIHeadLike(nn.Module):
    """Two feature levels, RoIs pooled from each into one buffer sized by
    ``self.out_channels``, as mmdet's ``SingleRoIExtractor`` does."""

    def __init__(self, pool):
        super().__init__()
        self.out_channels = 8
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.roi_layers = nn.ModuleList([pool(1.0), pool(0.5)])
        self.fc = nn.Linear(8 * 4 * 4, 5)
        # an attribute, not a buffer: ``randomise`` leaves the boxes
        self.rois = torch.tensor([[0, 1., 1., 9., 9.], [1, 0., 2., 15., 12.],
                                  [0, 4., 3., 11., 14.], [1, 2., 2., 6., 7.]])

    def forward(self, x):
        feats = [F.relu(self.a(x))]
        feats.append(self.b(feats[0]))
        out = feats[0].new_zeros(len(self.rois), self.out_channels, 4, 4)
        for level, inds in enumerate((torch.tensor([0, 3]),
                                      torch.tensor([1, 2]))):
            out[inds] = self.roi_layers[level](feats[level], self.rois[inds])
        return self.fc(out.flatten(1))


def roi_align(scale):
    return RoIAlign((4, 4), scale, sampling_ratio=2)


def test_roi_pooling_into_a_buffer_passes_channels():
    """(mmcv's RoIPool, under the same rule, has no CPU kernel to run.)"""
    model = randomise(RoIHeadLike(roi_align).eval())
    x = torch.randn(*IMAGE)
    result = trace_groups(model, x)
    assert not [w for w in result.warnings if 'outside torch' in w]
    group = _group(result, 'a.weight')
    assert group.prunable, group.frozen
    # both levels' channels meet in the buffer: one group
    assert group is _group(result, 'b.weight')
    removed = {group.id: [1, 4, 6]}
    pruned, _ = assert_masked_equals_pruned(model, result, x, removed)
    assert pruned.out_channels == 5  # the buffer's size follows


class LiteralBuffer(RoIHeadLike):
    """The buffer's width is a literal: it cannot follow."""

    def forward(self, x):
        feats = F.relu(self.a(x))
        out = feats.new_zeros(len(self.rois), 8, 4, 4)
        out[torch.arange(len(self.rois))] = self.roi_layers[0](feats,
                                                               self.rois)
        return self.fc(out.flatten(1))


def test_buffer_of_a_literal_width_freezes_its_channels():
    model = LiteralBuffer(roi_align).eval()
    result = trace_groups(model, torch.randn(*IMAGE))
    group = _group(result, 'a.weight')
    assert not group.prunable
    assert 'buffer of a fixed width' in group.frozen


class ConstantChannels(nn.Module):
    """SOLOv2's kernel branch: coordinates concatenated, then dropped
    again by a slice with a literal bound (``[:, :-2]``); or put first and
    dropped by a literal start (``[:, 2:]``)."""

    def __init__(self, start):
        super().__init__()
        self.start = start
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        coords = torch.ones_like(x[:, :2])
        if self.start:
            feat = torch.cat([coords, F.relu(self.a(x))], 1)[:, 2:]
        else:
            feat = torch.cat([F.relu(self.a(x)), coords], 1)[:, :-2]
        return self.b(feat)


@pytest.mark.parametrize('start', [False, True])
def test_slice_with_a_literal_bound_freezes_only_what_it_counts(start):
    model = randomise(ConstantChannels(start).eval())
    x = torch.randn(*IMAGE)
    result = trace_groups(model, x)
    group = _group(result, 'a.weight')
    assert group.prunable, group.frozen
    assert group.channels == 8
    removed = {group.id: list(range(group.num_units))[1::2]}
    assert_masked_equals_pruned(model, result, x, removed)


class ShapeAsTensor(nn.Module):
    """Deformable DETR's ``torch._shape_as_tensor(feat)[2:]`` (spatial
    sizes as data); ``channel_read`` also reads the width as data."""

    def __init__(self, channel_read):
        super().__init__()
        self.channel_read = channel_read
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        feat = F.relu(self.a(x))
        sizes = torch._shape_as_tensor(feat)
        scale = sizes[:2] if self.channel_read else sizes[2:]
        return self.b(feat) * scale.float().sum()


def test_shape_as_tensor_passes_unless_the_width_is_read():
    x = torch.randn(*IMAGE)
    model = randomise(ShapeAsTensor(False).eval())
    result = trace_groups(model, x)
    group = _group(result, 'a.weight')
    assert group.prunable, group.frozen
    assert_masked_equals_pruned(model, result, x, random_removal(result, .5))
    with pytest.warns(UserWarning, match='reads a channel width of '
                      '`_shape_as_tensor`'):
        result = trace_groups(ShapeAsTensor(True).eval(), x)
    assert not _group(result, 'a.weight').prunable


class TopkGather(nn.Module):
    """DINO's query selection: tokens picked by index, the index repeated
    along the channels."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 8)
        self.score = nn.Linear(3, 1)
        self.b = nn.Linear(8, 4)

    def forward(self, x):
        tokens = x.flatten(2).transpose(1, 2)
        feats = F.relu(self.a(tokens))
        picked = torch.topk(self.score(tokens)[..., 0], 5, dim=1)[1]
        index = picked.unsqueeze(-1).repeat(1, 1, feats.shape[-1])
        return self.b(torch.gather(feats, 1, index))


def test_gather_of_tokens_passes_channels():
    model = randomise(TopkGather().eval())
    x = torch.randn(*IMAGE)
    result = trace_groups(model, x)
    group = _group(result, 'a.weight')
    assert group.prunable, group.frozen
    assert_masked_equals_pruned(model, result, x, {group.id: [0, 3, 5]})


class NonZero(nn.Module):
    """Positions where ``a``'s channels are positive, as indices into
    another stream: ``a`` is read as data, ``b`` stays prunable."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(3, 8, 1)
        self.c = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        found = (self.a(x) > 0).nonzero()
        rows = self.c(F.relu(self.b(x))).flatten(2)[..., found[:, 2]]
        return rows


def test_nonzero_freezes_what_it_reads_and_nothing_after():
    model = randomise(NonZero().eval())
    x = torch.randn(*IMAGE)
    with pytest.warns(UserWarning, match='`nonzero` in `model` reads the '
                      'positions of channels'):
        result = trace_groups(model, x)
    assert 'nonzero' in _group(result, 'a.weight').frozen
    group = _group(result, 'b.weight')
    assert group.prunable, group.frozen
    assert_masked_equals_pruned(model, result, x, {group.id: [0, 2, 5]})
