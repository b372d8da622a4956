"""Attention ops that come as one function.

``scaled_dot_product_attention(q, k, v)`` is a matmul, a softmax over keys
and a matmul: q and k are tied along the contracted head dim, and the output
along the heads of v; with the heads tied to all their dims this removes
whole heads, so the default ``1 / sqrt(head_dim)`` scale never changes.

``nn.MultiheadAttention`` computes ``head_dim = embed_dim // num_heads`` from
its input's width, so its inner width must equal the model width it reads.
The handler ties, for head ``h``, that head's q/k/v rows of ``in_proj``, its
columns of ``out_proj`` and a slab of ``head_dim`` channels of the input
width: a unit removes a head and keeps ``embed_dim == num_heads * head_dim``.
"""
import numpy as np

from mmcpd.comb.couple import broadcast_keys, couple
from mmcpd.comb.labels import Block, dim_ids
from mmcpd.comb.handlers.base import OpContext, function, register
from mmcpd.comb.handlers.layers import attr_update


@register(function('scaled_dot_product_attention'))
def sdpa(ctx: OpContext) -> None:
    graph = ctx.graph
    q, k, v = ctx.arg(0, 'query'), ctx.arg(1, 'key'), ctx.arg(2, 'value')
    mask = ctx.arg(3, 'attn_mask')
    out = ctx.outputs[0]
    nd = out.dim()
    batch = list(out.shape[:-2])
    items = [
        (graph.get(q), tuple(q.shape),
         broadcast_keys(q.shape[:-2], batch) + [nd - 2, 'k']),
        (graph.get(k), tuple(k.shape),
         broadcast_keys(k.shape[:-2], batch) + ['s', 'k']),
        (graph.get(v), tuple(v.shape),
         broadcast_keys(v.shape[:-2], batch) + ['s', nd - 1]),
    ]
    if mask is not None and hasattr(mask, 'shape'):
        items.append((graph.get(mask), tuple(mask.shape),
                      broadcast_keys(mask.shape[:-2], batch) +
                      [nd - 2, 's'][2 - min(2, mask.dim()):]))
    labels = couple(graph, items, ctx.via)
    graph.set(out, labels)
    if ctx.arg(6, 'scale') is None:
        _keep_head_dim(ctx, q)


def _keep_head_dim(ctx: OpContext, q) -> None:
    """The default scale is ``1 / sqrt(q.shape[-1])``: the head dim must
    keep its size, so units are whole heads; with one head (no head axis)
    nothing can go."""
    dim = q.dim() - 1
    for block in ctx.graph.get(q):
        if dim not in block.dims:
            continue
        if len(block.dims) > 1:
            ctx.graph.union_along(block.ids, [block.dims.index(dim)])
        else:
            ctx.graph.freeze(
                block.ids, f'the default scale of {ctx.via} follows the '
                'head dim, and there is one head')


@register(function('multi_head_attention_forward'))
def multi_head_attention(ctx: OpContext) -> None:
    graph = ctx.graph
    query, key, value = ctx.args[:3]
    num_heads = ctx.arg(4, 'num_heads')
    in_w, in_b = ctx.arg(5, 'in_proj_weight'), ctx.arg(6, 'in_proj_bias')
    out_w, out_b = ctx.arg(11, 'out_proj_weight'), ctx.arg(
        12, 'out_proj_bias')
    separate = ctx.kwargs.get('use_separate_proj_weight', False)
    bias_k = ctx.arg(7, 'bias_k')
    outs = ctx.outputs
    out = outs[0]
    if separate or bias_k is not None or graph.leaf_name(in_w) is None:
        reason = f'unsupported attention form in {ctx.via}'
        ctx.freeze_inputs(reason)
        ctx.frozen_output(reason)
        graph.warnings.append(reason)
        return
    embed = query.shape[-1]
    head_dim = embed // num_heads
    rows = graph.leaf_dim(in_w, 0, 'out').reshape(3, num_heads, head_dim)
    cols = graph.leaf_dim(in_w, 1, 'in')
    out_rows = graph.leaf_dim(out_w, 0, 'out')
    out_cols = graph.leaf_dim(out_w, 1, 'in').reshape(num_heads, head_dim)
    heads = np.concatenate([
        rows.transpose(1, 0, 2).reshape(num_heads, -1), out_cols,
        cols.reshape(num_heads, head_dim)
    ], axis=1)
    graph.union_along(heads, [1])
    if in_b is not None:
        graph.union(graph.leaf_dim(in_b, 0).reshape(3, num_heads, head_dim),
                    rows, ctx.via)
    if out_b is not None:
        graph.union(graph.leaf_dim(out_b, 0), out_rows, ctx.via)
    for t in (query, key, value):
        ids = dim_ids(graph, graph.get(t), t.dim() - 1)
        if ids is None:
            graph.freeze(cols, f'unlabelled input of {ctx.via}')
        else:
            graph.union(ids, cols, ctx.via)
    keys = list(range(query.dim() - 1)) + [None]
    labels = couple(graph, [(graph.get(query), tuple(query.shape), keys)],
                    ctx.via)
    graph.set(out, labels + [Block((out.dim() - 1, ), out_rows)])
    # queries (L, N, E) meet q's rows, keys and values (S, N, E) k's and v's
    # (fewer with spatial reduction): a unit removes as many rows of each,
    # so their mean per element stays exact
    batch = max(graph.batch, 1)
    tokens = int(np.prod(query.shape[:-1])) / batch
    sources = int(np.prod(key.shape[:-1])) / batch
    graph.add_param_macs(graph.leaf_name(in_w), (tokens + 2 * sources) / 3)
    graph.add_param_macs(graph.leaf_name(out_w), tokens)
    # QK^T and attention x V: 2 * L * S multiply-adds per channel of the
    # heads (query (L, N, E), key (S, N, E)), split over the heads' channels
    pairs = int(np.prod(query.shape[:-1])) * key.shape[0]
    graph.add_op_macs(ctx.via, 2 * pairs * query.shape[-1], [out_cols])
    per_head = heads[:, :1]
    attr_update(ctx, 'num_heads', per_head)
    for attr in ('embed_dim', 'kdim', 'vdim'):
        attr_update(ctx, attr, cols)
