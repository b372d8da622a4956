"""Ops that move positions around: reshapes, permutes, expands, repeats.

A reshape maps runs of input dims onto runs of output dims with the same
number of elements. The ids of a block follow the elements: flattening
``(C, H, W)`` repeats each channel's id ``H * W`` times; splitting ``C`` into
``(heads, head_dim)`` makes a joint block. Explicit sizes in ``view`` /
``reshape`` calls often come from module attributes (``self.num_heads``):
attributes of the calling module whose value equals such a size are
recorded, to be updated when the size shrinks.
"""
from typing import List, Sequence, Tuple

import numpy as np
import torch

from mmcpd.comb.couple import broadcast_keys, couple
from mmcpd.comb.labels import Block, Labels, dim_ids
from mmcpd.comb.sizes import AttrInt, SIZED, sym_args, tie_sizes, untracked
from mmcpd.comb.handlers.base import OpContext, function, method, register


def segments(in_shape: Sequence[int],
             out_shape: Sequence[int]) -> List[Tuple[list, list]]:
    """Runs of input and output dims holding the same elements."""
    segs, i, j = [], 0, 0
    n, m = len(in_shape), len(out_shape)
    while i < n or j < m:
        if i < n and in_shape[i] == 1:
            segs.append(([i], []))
            i += 1
            continue
        if j < m and out_shape[j] == 1:
            segs.append(([], [j]))
            j += 1
            continue
        if i >= n or j >= m:
            raise ValueError(f'cannot match {in_shape} to {out_shape}')
        a, b = [i], [j]
        pa, pb = in_shape[i], out_shape[j]
        i, j = i + 1, j + 1
        while pa != pb:
            if pa < pb:
                a.append(i)
                pa *= in_shape[i]
                i += 1
            else:
                b.append(j)
                pb *= out_shape[j]
                j += 1
        segs.append((a, b))
    return segs


def _squeeze_constant_axes(dims: List[int], ids: np.ndarray):
    keep = [
        ax for ax in range(ids.ndim)
        if ids.shape[ax] > 1 and not np.all(ids == np.take(ids, [0], ax))
    ]
    index = tuple(slice(None) if ax in keep else 0 for ax in range(ids.ndim))
    return [dims[ax] for ax in keep], ids[index]


def reshape_labels(ctx: OpContext, labels: Labels, in_shape, out_shape):
    graph = ctx.graph
    try:
        segs = segments(list(in_shape), list(out_shape))
    except (ValueError, IndexError):
        ctx.freeze_inputs(f'unmatched reshape in {ctx.via}')
        return None
    seg_of = {}
    for s, (a, _) in enumerate(segs):
        for d in a:
            seg_of[d] = s
    out: Labels = []
    used = {}
    for block in labels:
        touched = sorted({seg_of[d] for d in block.dims})
        if any(s in used for s in touched):
            reason = f'two channel blocks merged by {ctx.via}'
            graph.freeze(block.ids, reason)
            graph.freeze(used[touched[0]].ids, reason)
            continue
        for s in touched:
            used[s] = block
        in_dims = sorted(d for s in touched for d in segs[s][0])
        out_dims = sorted(d for s in touched for d in segs[s][1])
        order = sorted(range(len(block.dims)), key=lambda i: block.dims[i])
        ids = np.transpose(block.ids, order)
        sorted_dims = [block.dims[i] for i in order]
        shape = [in_shape[d] if d in sorted_dims else 1 for d in in_dims]
        ids = ids.reshape(shape)
        ids = np.broadcast_to(ids, [in_shape[d] for d in in_dims])
        ids = ids.reshape([out_shape[d] for d in out_dims])
        dims, ids = _squeeze_constant_axes(out_dims, ids)
        if dims:
            out.append(Block(tuple(dims), np.ascontiguousarray(ids)))
    return out


def _requested_sizes(ctx: OpContext):
    sizes = ctx.args[1:]
    if 'shape' in ctx.kwargs:
        sizes = (ctx.kwargs['shape'], )
    if len(sizes) == 1 and isinstance(sizes[0], (list, tuple, torch.Size)):
        sizes = tuple(sizes[0])
    return sizes


def _int_attrs(module) -> dict:
    """The module's int attributes, and the elements of its int lists as
    ``'name[i]'`` (``num_features[3]``), with the value they start from
    (an element's own value: :mod:`mmcpd.prune.surgery.list_attrs` writes it
    back into the list)."""
    found = {}
    for k, v in vars(module).items():
        if k.startswith('_'):
            continue
        if type(v) in (int, AttrInt) and v > 1:
            found[k] = (v, int(v))
        elif isinstance(v, (list, tuple)) and v and all(
                type(e) in (int, AttrInt) for e in v):
            for i, e in enumerate(v):
                if e > 1:
                    found[f'{k}[{i}]'] = (e, int(e))
    return found


def _attr_rules(ctx: OpContext, labels: Labels) -> None:
    """Attributes of the calling module that give an explicit size."""
    module = ctx.module
    if module is None:
        return
    sizes = _requested_sizes(ctx)
    attrs = _int_attrs(module)
    for block in labels:
        for axis, dim in enumerate(block.dims):
            if dim >= len(sizes) or type(sizes[dim]) not in (int, AttrInt):
                continue
            size = sizes[dim]
            if size <= 1:
                continue
            rows = np.moveaxis(block.ids, axis, 0).reshape(size, -1)
            if isinstance(size, AttrInt):  # read off a module: that one
                ctx.graph.attr_rules.append(
                    (size.scope, size.attr, int(size), rows))
                continue
            for name, (value, old) in attrs.items():
                if value == size:
                    ctx.graph.attr_rules.append((ctx.scope, name, old, rows))


RESHAPES = [
    method('view'), method('reshape'), *function('reshape'),
    method('view_as'), method('reshape_as'), method('flatten'),
    *function('flatten'), method('unflatten'), *function('unflatten'),
    method('squeeze'), *function('squeeze'), method('unsqueeze'),
    *function('unsqueeze'), method('squeeze_'), method('unsqueeze_'),
    method('ravel'), *function('ravel')
]
SIZED.update(f for f in RESHAPES if f is not None)


@register(RESHAPES)
def reshape(ctx: OpContext) -> None:
    x, out = ctx.inputs[0], ctx.outputs[0]
    labels = ctx.graph.get(x)
    tied = ctx.name in ('view', 'reshape')
    syms = sym_args((ctx.args[1:], ctx.kwargs))
    new = reshape_labels(ctx, labels, tuple(x.shape), tuple(
        out.shape)) if labels else None
    if new is None or not tied:
        untracked(ctx.graph, syms, ctx.via)
    if not labels:
        return
    if new is None:
        ctx.frozen_output(f'unmatched reshape in {ctx.via}')
        return
    ctx.graph.set(out, new)
    if tied:
        _attr_rules(ctx, new)
        attrs = [
            v for v in getattr(ctx.module, '__dict__', {}).values()
            if type(v) in (int, AttrInt)
        ]
        tie_sizes(ctx.graph, _requested_sizes(ctx), new, ctx.via, attrs)


def _permute(labels: Labels, perm: Sequence[int]) -> Labels:
    where = {src: dst for dst, src in enumerate(perm)}
    return [Block(tuple(where[d] for d in b.dims), b.ids) for b in labels]


def _perm(ctx: OpContext, nd: int) -> List[int]:
    name = ctx.name
    if name == 'permute':
        dims = ctx.args[1:]
        if 'dims' in ctx.kwargs:
            dims = (ctx.kwargs['dims'], )
        if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
            dims = dims[0]
        return [d % nd for d in dims]
    if name in ('transpose', 'swapaxes', 'swapdims', 'transpose_'):
        a = ctx.arg(1, 'dim0') % nd
        b = ctx.arg(2, 'dim1') % nd
        perm = list(range(nd))
        perm[a], perm[b] = perm[b], perm[a]
        return perm
    if name in ('t', 'T', 't_'):
        return list(reversed(range(nd)))
    if name == 'mT':
        return list(range(nd - 2)) + [nd - 1, nd - 2]
    if name == 'movedim' or name == 'moveaxis':
        src, dst = ctx.arg(1, 'source'), ctx.arg(2, 'destination')
        src = [src] if isinstance(src, int) else list(src)
        dst = [dst] if isinstance(dst, int) else list(dst)
        order = [d for d in range(nd) if d not in [s % nd for s in src]]
        for s, d in sorted(zip([s % nd for s in src], [d % nd for d in dst]),
                           key=lambda p: p[1]):
            order.insert(d, s)
        return order
    raise KeyError(name)


@register(
    method('permute'), function('permute'), method('transpose'),
    function('transpose'), method('transpose_'), method('swapaxes'),
    function('swapaxes'), method('swapdims'), function('swapdims'),
    method('t'), function('t'), method('movedim'), function('movedim'),
    method('moveaxis'), function('moveaxis'), torch.Tensor.T.__get__,
    torch.Tensor.mT.__get__)
def permute(ctx: OpContext) -> None:
    x, out = ctx.inputs[0], ctx.outputs[0]
    labels = ctx.graph.get(x)
    if labels:
        ctx.graph.set(out, _permute(labels, _perm(ctx, x.dim())))


@register(torch.Tensor.data.__get__)
def same(ctx: OpContext) -> None:
    ctx.graph.set(ctx.outputs[0], ctx.graph.get(ctx.inputs[0]))


@register(
    method('expand'), method('expand_as'), function('broadcast_to'),
    method('broadcast_to'))
def expand(ctx: OpContext) -> None:
    x, out = ctx.inputs[0], ctx.outputs[0]
    items = [(ctx.graph.get(x), tuple(x.shape),
              broadcast_keys(x.shape, out.shape))]
    ctx.graph.set(out, couple(ctx.graph, items, ctx.via))


@register(method('repeat'), method('tile'), function('tile'))
def repeat(ctx: OpContext) -> None:
    x, out = ctx.inputs[0], ctx.outputs[0]
    labels = ctx.graph.get(x)
    if not labels:
        return
    offset = out.dim() - x.dim()
    new = []
    for block in labels:
        reps = [out.shape[d + offset] // x.shape[d] for d in block.dims]
        new.append(
            Block(tuple(d + offset for d in block.dims),
                  np.tile(block.ids, reps)))
    ctx.graph.set(out, new)


@register(torch.nn.functional.unfold)
def unfold(ctx: OpContext) -> None:
    """``F.unfold`` (im2col): output channel ``c * k + p`` is input channel
    ``c`` at kernel position ``p``, so each channel's id repeats ``k``
    times (Swin's patch merging)."""
    graph = ctx.graph
    x, out = ctx.inputs[0], ctx.outputs[0]
    labels = graph.get(x)
    for block in labels:
        if block.dims != (1, ):
            graph.freeze(block.ids, f'{ctx.via} moves channels')
    found = [b for b in labels if b.dims == (1, )]
    if found and x.dim() == 4:
        per_channel = out.shape[1] // x.shape[1]
        graph.set(out,
                  [Block((1, ), np.repeat(found[0].ids, per_channel))])
    else:
        ctx.frozen_output(f'{ctx.via} moves channels')


@register(getattr(torch, '_shape_as_tensor', None))
def shape_as_tensor(ctx: OpContext) -> None:
    """``torch._shape_as_tensor(x)`` (Deformable DETR's spatial shapes,
    written so for ONNX): a tensor of ``x``'s sizes, no channels. Where it
    holds a channel width, that position is remembered: a read of it as
    data freezes the channels (:func:`read_shape_data`); ``[2:]`` does
    not read it."""
    x, out = ctx.inputs[0], ctx.outputs[0]
    widths = {}
    for block in ctx.graph.get(x):
        for d in block.dims:
            widths[d] = dim_ids(ctx.graph, ctx.graph.get(x), d)
    ctx.graph.shape_data[out] = widths


def _kept_positions(index, n: int):
    """Positions of a 1-D tensor of ``n`` that ``t[index]`` keeps, or None
    where the index is no int or slice."""
    if isinstance(index, tuple) and len(index) == 1:
        index = index[0]
    if isinstance(index, slice):
        return set(range(*index.indices(n)))
    if type(index) is int:
        return {index % n}
    return None


def read_shape_data(graph, func, name: str, args, kwargs, where: str):
    """Freeze the channel widths that an op reads off a tensor of
    :func:`shape_as_tensor`, unless it is a slice that leaves them out."""
    for t in [a for a in list(args) + list(kwargs.values())
              if isinstance(a, torch.Tensor)]:
        widths = graph.shape_data.get(t)
        if not widths:
            continue
        kept = None
        if name == '__getitem__' and args and t is args[0] and len(args) > 1:
            kept = _kept_positions(args[1], t.shape[0])
        read = widths if kept is None else {
            d: ids for d, ids in widths.items() if d in kept}
        for ids in read.values():
            graph.freeze(ids, f'{where} reads a channel width of '
                         '`_shape_as_tensor` as data')
        if read:
            graph.warnings.append(f'{where} reads a channel width of '
                                  '`_shape_as_tensor` as data')
