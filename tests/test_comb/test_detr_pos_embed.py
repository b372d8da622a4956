"""The DETR family's transformer stream (issue 25): the sine positional
embedding is a fixed table whose output channels are selected, and
Deformable DETR's query embedding is split by the encoder's width.

A hand-built model with both patterns, every parameter randomised and
random units removed: masked == pruned == rebuilt from the spec.
"""
import warnings

import mmdet.models  # noqa: F401  (tools/install.sh installs mmdet 3.3)
import pytest
import torch
from mmdet.models.layers import SinePositionalEncoding
from torch import nn

from mmcpd.comb import trace_groups
from mmcpd.comb.fixed_tables import SELECT_BUFFER
from mmcpd.prune.verified_comb import comb_model

from .equivalence import assert_masked_equals_pruned, randomise


class TinyDETR(nn.Module):
    """DETR's and Deformable DETR's patterns at width 16 with 4 heads.

    The projected feature map plus the sine table (of the padding mask, as
    DETR calls it, or of the feature map's shape, as Deformable DETR does)
    run through self-attention into a memory; the query embedding is split
    by the memory's width into query positions and queries (Deformable
    DETR's ``pre_decoder``), which attend to the memory.
    """

    def __init__(self, width=16, heads=4, queries=3, masked=False):
        super().__init__()
        self.masked = masked
        self.proj = nn.Conv2d(3, width, 1)
        self.pos = SinePositionalEncoding(
            width // 2, normalize=True, offset=-0.5)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm = nn.LayerNorm(width)
        self.query = nn.Embedding(queries, 2 * width)
        self.cross = nn.MultiheadAttention(width, heads, batch_first=True)
        self.head = nn.Linear(width, 5)

    def forward(self, x):
        feat = self.proj(x)
        b, c, h, w = feat.shape
        if self.masked:
            pos = self.pos(feat.new_zeros(b, h, w, dtype=torch.bool))
        else:
            pos = self.pos(None, input=feat)
        feat = feat.view(b, c, -1).permute(0, 2, 1)
        pos = pos.view(b, c, -1).permute(0, 2, 1)
        q = feat + pos
        memory = self.norm(feat + self.attn(q, q, feat)[0])
        query_pos, query = torch.split(
            self.query.weight, memory.shape[-1], dim=1)
        query_pos = query_pos.unsqueeze(0).expand(b, -1, -1)
        query = query.unsqueeze(0).expand(b, -1, -1)
        out = query + self.cross(query + query_pos, memory + pos, memory)[0]
        return self.head(out)


def _stream(result):
    """The group of the projection's output channels."""
    return next(g for g in result.groups if g.root == 'proj.weight')


@pytest.mark.parametrize('masked', [False, True])
def test_positional_table_follows_the_stream(masked):
    """The table's channels are a member of the stream's group (it was
    frozen by ``pos.view(b, c, -1)``), which prunes whole heads exactly;
    the cut keeps the table's full width and the kept channels' indices."""
    model = randomise(TinyDETR(masked=masked))
    x = torch.randn(2, 3, 6, 5)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # nothing freezes
        result = comb_model(model, x)
    stream = _stream(result)
    assert stream.prunable and stream.num_units == 4, stream
    table = next(m for m in stream.members
                 if m.name == f'pos.{SELECT_BUFFER}')
    assert (table.dim, table.role, table.counts) == (0, 'param', (4, ) * 4)
    names = {m.name for m in stream.members}
    # the decoder's queries and positions are tied by the split's size
    assert {'query.weight', 'cross.in_proj_weight', 'head.weight'} <= names
    pruned, spec = assert_masked_equals_pruned(model, result, x,
                                               {stream.id: [0, 2]})
    kept = getattr(pruned.pos, SELECT_BUFFER)
    assert kept.tolist() == [4, 5, 6, 7, 12, 13, 14, 15]
    assert pruned.pos.num_feats == 8  # the table is computed at full width
    assert spec.shapes[f'pos.{SELECT_BUFFER}'] == [8]
    assert pruned.query.weight.shape == (3, 16)
    assert SELECT_BUFFER not in dict(model.pos.named_buffers())


def test_second_cut_selects_from_the_first():
    """Combed again, a pruned table's output has the kept width and its
    buffer is a member again: a second cut keeps a subset of the first's
    channels, still exactly."""
    model = randomise(TinyDETR())
    x = torch.randn(1, 3, 5, 5)
    result = comb_model(model, x)
    pruned, _ = assert_masked_equals_pruned(model, result, x,
                                            {_stream(result).id: [1]})
    again = comb_model(pruned, x)
    stream = _stream(again)
    assert stream.prunable and stream.num_units == 3
    twice, _ = assert_masked_equals_pruned(pruned, again, x,
                                           {stream.id: [2]})
    assert getattr(twice.pos, SELECT_BUFFER).tolist() == [0, 1, 2, 3, 8, 9,
                                                          10, 11]


class SplitByWidth(nn.Module):
    """An embedding split by a width read off another stream, which no op
    ties to it (Deformable DETR's decoder queries meet the encoder's
    memory through separate projections only): ``torch.split(embed, C)``
    must ask for the pruned ``C``. With ``extra`` columns the last piece
    is a remainder."""

    def __init__(self, width=6, extra=0):
        super().__init__()
        self.stem = nn.Linear(4, width)
        self.embed = nn.Parameter(torch.randn(3, 2 * width + extra))
        self.head = nn.Linear(width, 2)
        self.decode = nn.Linear(width, 2)

    def forward(self, x):
        y = self.stem(x)
        pieces = torch.split(self.embed, y.shape[-1], dim=1)
        return self.head(y).unsqueeze(1) + self.decode(pieces[0] * pieces[1])


def test_split_size_computed_from_a_width_ties_it():
    """Deformable DETR's ``torch.split(query_embed, c)``: both pieces are
    tied to the channels ``c`` counts (they failed verification, the
    encoder's width staying while the pieces shrank)."""
    model = randomise(SplitByWidth())
    x = torch.randn(2, 4)
    result = comb_model(model, x)
    stem = next(g for g in result.groups if g.root == 'stem.weight')
    assert stem.prunable and stem.num_units == 6, stem
    embed = next(m for m in stem.members if m.name == 'embed')
    assert embed.units[1] == (1, 7)  # channel 1 of each piece
    pruned, _ = assert_masked_equals_pruned(model, result, x,
                                            {stem.id: [1, 4]})
    assert pruned.embed.shape == (3, 8)


def test_split_with_a_remainder_freezes_the_width():
    result = trace_groups(randomise(SplitByWidth(extra=2)), torch.randn(2, 4))
    stem = next(g for g in result.groups if g.root == 'stem.weight')
    assert not stem.prunable
    assert 'split@model: a piece smaller than the split size' in stem.frozen
