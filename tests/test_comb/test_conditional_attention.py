"""mmdet's ``ConditionalAttention`` (Conditional DETR, DAB-DETR decoders).

Two size rules meet there:

* its scale, ``float(hidden_dims // self.num_heads) ** -0.5``, is computed
  in forward from the query width: constant where whole heads go (and
  ``num_heads`` follows them), so the q/k channels are tied into heads
  rather than frozen;
* the cross-attention concatenates content and position queries per head,
  ``cat([q.view(.., heads, c // heads), pos.view(..)], 3).view(.., 2 * c)``:
  the ``2 * c`` positions hold the channels head by head, so they are tied
  head by head (not ``i * c + j``, which would tie heads to each other).

Each on mmdet's own module, randomised, with random heads removed:
masked == pruned == rebuilt, and ``num_heads`` follows.
"""
import numpy as np
import pytest
import torch
from torch import nn

from mmcpd.apis.pruning import comb_model
from mmcpd.comb.labels import Block, LabelGraph
from mmcpd.comb.sizes import SymInt, tie_sizes

from .equivalence import (assert_masked_equals_pruned, random_removal,
                          randomise)

WIDTH, HEADS = 24, 4


class CondDecoderLayer(nn.Module):
    """Self- then cross-attention of mmdet's ``ConditionalAttention`` on a
    stream of queries and a memory, both made by linear stems."""

    def __init__(self):
        super().__init__()
        from mmdet.models.layers.transformer.utils import \
            ConditionalAttention
        self.stem = nn.Linear(5, WIDTH)
        self.mem = nn.Linear(5, WIDTH)
        self.pos = nn.Linear(5, WIDTH)
        self.sine = nn.Linear(5, WIDTH)
        self.self_attn = ConditionalAttention(WIDTH, HEADS)
        self.cross_attn = ConditionalAttention(WIDTH, HEADS, cross_attn=True)
        self.head = nn.Linear(WIDTH, 3)

    def forward(self, x):
        q, pos = self.stem(x), self.pos(x)
        key = self.mem(x)
        q = self.self_attn(q, q, query_pos=pos)
        q = self.cross_attn(q, key, query_pos=pos, key_pos=key,
                            ref_sine_embed=self.sine(x), is_first=True)
        return self.head(q)


def _group(result, root):
    return next(g for g in result.groups if g.root == root)


def test_conditional_attention_prunes_whole_heads():
    pytest.importorskip('mmdet')
    x = torch.randn(2, 6, 5)
    model = randomise(CondDecoderLayer()).eval()
    result = comb_model(model, x, forward_fn=lambda m, i: m(i))
    for name in ('self_attn', 'cross_attn'):
        qk = _group(result, f'{name}.qcontent_proj.weight')
        assert qk.prunable, str(result)
        assert qk.num_units == HEADS  # whole heads: the scale stays
    removed = random_removal(result, 0.5)
    assert removed
    pruned, _ = assert_masked_equals_pruned(model, result, x, removed)
    for name in ('self_attn', 'cross_attn'):
        qk = _group(result, f'{name}.qcontent_proj.weight').id
        if qk in removed:
            attn = getattr(pruned, name)
            assert attn.num_heads == HEADS - len(removed[qk])
            assert attn.embed_dims == attn.v_proj.out_features


def test_doubled_width_is_tied_head_by_head():
    """``2 * c`` sizing a dim that holds ``c`` head by head, with as many
    other positions after each head: position ``(h, i, j)`` of ``(heads,
    2, c // heads)`` goes with channel ``h * (c // heads) + j``."""
    graph = LabelGraph()
    channels = graph.new_ids((8, ))
    other = graph.new_ids((4, 2))
    merged = np.concatenate([channels.reshape(4, 2), other], 1).ravel()
    size = SymInt(8, graph, Block((0, ), channels), 0) * 2
    tie_sizes(graph, [size], [Block((0, ), merged)], 'view@test')
    a, b = graph.unions()
    tied = {(int(i), int(j)) for i, j in zip(a, b)}
    tied |= {(j, i) for i, j in tied}
    for h in range(4):
        for j in range(2):
            assert (int(other[h, j]), int(channels[h * 2 + j])) in tied
