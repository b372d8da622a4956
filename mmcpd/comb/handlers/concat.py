"""Concatenation, stacking, splitting and indexing along channels.

``cat`` along channels lays the inputs' ids end to end; an unlabelled input
(the image that CGNet concatenates with its features, a constant) is frozen
on its own. Splitting into equal pieces (``chunk``, ``unbind``, an equal
``split``, and a slice that is one of ``n`` equal parts, such as
``x[:, :C // 2]`` with the bound computed from the shape) ties position
``i`` of every piece, so the pieces stay equal when channels go; a split by
one size whose last piece is a smaller remainder (EdgeNeXt's 34, 34, 32)
keeps the full pieces equal and the remainder no wider. Pieces of sizes
given one by one (``torch.split(x, [a, b])``) shrink on their own. A
size read off another tensor's channels ties them to its pieces
(:func:`~mmcpd.comb.sizes.tie_split`). An attribute of the calling
module that gives the split size follows the pieces (Res2Net's
``self.width``, HorNet's ``self.dims``). Other slices
and indexing with fixed bounds along a channel dimension would pick other
channels once some are removed: those channels are frozen, unless the
dimension is one axis of a joint block that never shrinks (``qkv[0]``).
Sizes and bounds computed in Python are checked by verification.
"""
import numpy as np
import torch

from mmcpd.comb.couple import couple
from mmcpd.comb.labels import Block, axis_of, dim_ids
from mmcpd.comb.sizes import AttrInt, is_int, tie_split
from mmcpd.comb.handlers.base import OpContext, function, method, register


def _norm_dim(dim, nd):
    return dim % nd if nd else 0


@register(function('cat'), function('concat'), function('concatenate'))
def cat(ctx: OpContext) -> None:
    graph = ctx.graph
    tensors = [t for t in ctx.arg(0, 'tensors') if t.numel() > 0]
    out = ctx.outputs[0]
    if not tensors:
        return
    dim = _norm_dim(ctx.arg(1, 'dim', 0), out.dim())
    if _cat_joint(ctx, tensors, dim, out):
        return
    pieces, any_labelled = [], False
    for t in tensors:
        ids = dim_ids(graph, graph.get(t), dim)
        if ids is None:
            ids = graph.new_ids((t.shape[dim], ))
            if t.shape[dim] > 1 or graph.get(t):
                graph.freeze(ids, f'unlabelled input of {ctx.via}')
            pieces.append((ids, False))
        else:
            any_labelled = True
            pieces.append((ids, True))
    items = []
    for t in tensors:
        keys = list(range(t.dim()))
        keys[dim] = None
        labels = [b for b in graph.get(t) if dim not in b.dims]
        items.append((labels, tuple(t.shape), keys))
    labels = couple(graph, items, ctx.via)
    if any_labelled:
        # an unlabelled piece (the input image, a constant) is frozen; the
        # labelled pieces shrink on their own, the cat follows their widths
        for ids, labelled in pieces:
            if not labelled:
                graph.freeze(ids, f'concatenated with a constant in '
                             f'{ctx.via}')
        labels.append(Block((dim, ), np.concatenate([p for p, _ in pieces])))
    graph.set(out, labels)


def _cat_joint(ctx: OpContext, tensors, dim: int, out) -> bool:
    """``cat`` along one axis of joint blocks that every input has over the
    same dims (heads x head dims): the output is one joint block, the
    inputs' ids end to end along that axis, so each head keeps its own
    positions. mmdet's conditional cross-attention concatenates content
    and position queries per head, ``cat([q.view(b, n, heads, d),
    pos.view(b, n, heads, d)], 3)``; collapsing the joint blocks to the
    cat dim would tie every head's position ``j`` together. False (nothing
    done) where the inputs have no such blocks."""
    graph = ctx.graph
    joint = []
    for t in tensors:
        found = axis_of(graph.get(t), dim)
        if found is None or len(found[0].dims) < 2:
            return False
        joint.append(found[0])
    dims = joint[0].dims
    axis = dims.index(dim)
    if any(b.dims != dims for b in joint):
        return False
    items = []
    for t in tensors:
        keys = [None if d in dims else d for d in range(t.dim())]
        labels = [b for b in graph.get(t) if not set(b.dims) & set(dims)]
        items.append((labels, tuple(t.shape), keys))
    labels = couple(graph, items, ctx.via)
    ids = np.concatenate([b.ids for b in joint], axis=axis)
    graph.set(out, labels + [Block(dims, ids)])
    return True


@register(function('stack'))
def stack(ctx: OpContext) -> None:
    tensors = ctx.arg(0, 'tensors')
    out = ctx.outputs[0]
    dim = _norm_dim(ctx.arg(1, 'dim', 0), out.dim())
    items = []
    for t in tensors:
        keys = [d if d < dim else d + 1 for d in range(t.dim())]
        items.append((ctx.graph.get(t), tuple(t.shape), keys))
    ctx.graph.set(out, couple(ctx.graph, items, ctx.via))


def _remainder_ties(graph, ids: np.ndarray, sizes, via: str) -> bool:
    """``torch.split(x, step)`` whose last piece is a remainder ``r <
    step`` (EdgeNeXt's 34, 34, 32): position ``i < r`` of every piece is
    tied, and the full pieces' positions from ``r - 1`` on go with the
    remainder's last position. The full pieces stay equal and the
    remainder never grows past them nor empties, so ``step`` minus what a
    unit removes from a full piece splits the pruned width into as many
    pieces (the unit of the remainder's last position removes ``step - r
    + 1`` from each full piece: the size attribute, as every width, follows
    it unit by unit)."""
    step, r, n = sizes[0], sizes[-1], len(sizes)
    if n < 2 or len(set(sizes[:-1])) != 1 or not 0 < r < step:
        return False
    full = ids[:step * (n - 1)].reshape(n - 1, step)
    graph.union(full, full[:1], via)
    graph.union(full[:, :r], ids[step * (n - 1):][None], via)
    graph.union(full[:, r - 1:], full[:, r - 1:r], via)
    return True


def _pieces(ctx: OpContext, x, dim, outs, sized: bool = False,
            step: bool = False):
    """Give each output its piece of x's labels along dim.

    Pieces of equal size are tied position by position. Pieces of sizes
    given one by one (``sized``: ``torch.split(x, [a, b, c])``) shrink on
    their own: torch checks that the sizes add up to the width, so a size
    that does not follow its piece fails verification. Pieces of one size
    given by a tracked int (``step``) with a smaller last piece follow
    :func:`_remainder_ties`."""
    graph = ctx.graph
    labels = graph.get(x)
    sizes = [o.shape[dim] if o.dim() == x.dim() else 1 for o in outs]
    squeezed = any(o.dim() != x.dim() for o in outs)
    found = None
    for block in labels:
        if dim in block.dims:
            found = block
    equal = len(set(sizes)) == 1
    if found is not None:
        axis = found.dims.index(dim)
        if equal and sum(sizes) == x.shape[dim]:
            split = np.moveaxis(found.ids, axis, 0).reshape(
                len(sizes), sizes[0], *np.delete(found.ids.shape, axis))
            graph.union(split, split[:1], ctx.via)
        elif len(found.dims) > 1:  # LeViT's q, k, v of each head: the
            graph.union_along(found.ids, [axis])  # parts keep their sizes
        elif step and _remainder_ties(graph, found.ids, sizes, ctx.via):
            pass
        elif not sized:
            graph.freeze(found.ids, f'uneven split in {ctx.via}')
    start = 0
    for out, size in zip(outs, sizes):
        new = []
        for block in labels:
            if dim not in block.dims:
                dims = tuple(d - 1 if squeezed and d > dim else d
                             for d in block.dims)
                new.append(Block(dims, block.ids))
                continue
            axis = block.dims.index(dim)
            ids = np.take(block.ids, np.arange(start, start + size), axis)
            dims = list(block.dims)
            if squeezed:
                ids = np.take(ids, 0, axis)
                dims.pop(axis)
                dims = [d - 1 if d > dim else d for d in dims]
            if dims:
                new.append(Block(tuple(dims), ids))
        graph.set(out, new)
        start += size


@register(
    method('split'), function('split'), method('chunk'), function('chunk'),
    method('unbind'), function('unbind'), method('tensor_split'),
    function('tensor_split'), method('split_with_sizes'),
    function('split_with_sizes'), method('unsafe_split'),
    method('unsafe_chunk'))
def split(ctx: OpContext) -> None:
    x, outs = ctx.inputs[0], ctx.outputs
    if ctx.name == 'unbind':
        dim = ctx.arg(1, 'dim', 0)
    else:
        dim = ctx.arg(2, 'dim', 0)
    dim = _norm_dim(dim, x.dim())
    sizes = None
    if ctx.name in ('split', 'unsafe_split', 'split_with_sizes'):
        size = ctx.arg(1, 'split_size_or_sections', ctx.kwargs.get(
            'split_size', ctx.kwargs.get('split_sizes')))
        sizes = list(size) if isinstance(size, (list, tuple)) else [size]
        # plain ints, or ints the tracer marks (a module's attribute, a size
        # read off a shape: mmcpd.comb.sizes)
        if not all(is_int(s) for s in sizes):
            sizes = None
        else:
            sizes = [int(s) for s in sizes]
    sized = sizes is not None and len(sizes) == len(outs) > 1
    step = sizes is not None and len(sizes) == 1 < len(outs)
    _pieces(ctx, x, dim, outs, sized, step)
    if sizes is not None:
        attrs = [
            v for v in getattr(ctx.module, '__dict__', {}).values()
            if type(v) in (int, AttrInt)
        ]
        raw = size if isinstance(size, (list, tuple)) else [size]
        tie_split(ctx.graph, raw, [ctx.graph.get(o) for o in outs], dim,
                  ctx.via, attrs)
    if sizes is not None and ctx.module is not None:
        _size_attrs(ctx, dim, outs, sizes)


def _size_attrs(ctx: OpContext, dim: int, outs, sizes) -> None:
    """Attributes of the calling module that give the split sizes follow
    the pieces: ``torch.split(x, self.width, 1)`` (Res2Net's int) and
    ``torch.split(x, self.dims, 1)`` (HorNet's list, element by element).
    """
    graph = ctx.graph
    for out in outs:
        found = axis_of(graph.get(out), dim)
        if found is not None and len(found[0].dims) > 1:
            return  # sizes within a joint block (per head): left as they are
    pieces = [dim_ids(graph, graph.get(o), dim) for o in outs]
    widths = [len(p) for p in pieces if p is not None]
    for name, value in vars(ctx.module).items():
        if name.startswith('_'):
            continue
        if is_int(value) and value > 1 and sizes == [value] and \
                len(widths) == len(pieces) and \
                set(widths[:-1]) == {value} and widths[-1] <= value:
            graph.attr_rules.append((ctx.scope, name, int(value),
                                     pieces[0]))
        elif isinstance(value, (list, tuple)) and list(value) == sizes \
                and len(sizes) == len(outs) > 1:
            for k, piece in enumerate(pieces):
                if piece is not None and len(piece) == sizes[k]:
                    graph.attr_rules.append(
                        (ctx.scope, f'{name}[{k}]', sizes[k], piece))


def _index_items(index, nd):
    """Normalise a getitem index into a tuple over input dims."""
    if not isinstance(index, tuple):
        index = (index, )
    n_ellipsis_dims = nd - sum(1 for i in index
                               if i is not None and i is not Ellipsis and
                               not (isinstance(i, torch.Tensor) and
                                    i.dtype == torch.bool))
    items = []
    for i in index:
        if i is Ellipsis:
            items += [slice(None)] * n_ellipsis_dims
        else:
            items.append(i)
    used = sum(1 for i in items if i is not None)
    return items + [slice(None)] * (nd - used)


@register(method('__getitem__'))
def getitem(ctx: OpContext) -> None:
    graph = ctx.graph
    x, out = ctx.args[0], ctx.outputs[0]
    labels = graph.get(x)
    if not labels:
        return
    index = ctx.args[1]
    tensors = [i for i in (index if isinstance(index, tuple) else (index, ))
               if isinstance(i, (torch.Tensor, list))]
    if tensors:
        return _advanced_index(ctx, x, out, index)
    items = _index_items(index, x.dim())
    in_dim, out_dim, where = 0, 0, {}
    selected = {}
    for item in items:
        if item is None:
            out_dim += 1
            continue
        if isinstance(item, int):
            selected[in_dim] = item % x.shape[in_dim]
            in_dim += 1
            continue
        start, stop, step = item.indices(x.shape[in_dim])
        where[in_dim] = (out_dim, range(start, stop, step), item)
        in_dim += 1
        out_dim += 1
    new = []
    for block in labels:
        ids = block.ids
        dims = []
        index_nd = []
        for axis, d in enumerate(block.dims):
            if d in selected:
                if len(block.dims) > 1:
                    graph.union_along(ids, [axis])
                else:
                    graph.freeze(ids, f'fixed index into channels in '
                                 f'{ctx.via}')
                index_nd.append(selected[d])
                continue
            od, rng, item = where[d]
            if len(rng) != x.shape[d]:
                if len(block.dims) > 1:
                    graph.union_along(ids, [axis])
                elif not (_equal_part(graph, ids, rng, ctx.via)
                          or _anchored(graph, ids, item, ctx.via)):
                    graph.freeze(ids, f'fixed slice of channels in '
                                 f'{ctx.via}')
            index_nd.append(np.asarray(rng))
            dims.append(od)
        sliced = ids[np.ix_(*[np.atleast_1d(i) for i in index_nd])]
        keep = tuple(0 if isinstance(i, int) else slice(None)
                     for i in index_nd)
        sliced = sliced[keep]
        if dims:
            new.append(Block(tuple(dims), sliced))
    graph.set(out, new)


def _equal_part(graph, ids: np.ndarray, rng: range, via: str) -> bool:
    """A slice that is one of ``n`` equal parts of the channels
    (``x[:, :C // 2]``, ``x[:, C // 2:]`` with the bound computed from the
    shape, as in ShuffleNet V2's channel split) is a split into equal
    parts: position ``i`` of every part is tied, so the parts stay equal.
    A bound fixed in the code is caught by verification."""
    size, length = len(ids), len(rng)
    if rng.step != 1 or length < 2 or size % length or \
            rng.start % length or size == length:
        return False
    parts = ids.reshape(size // length, length)
    graph.union(parts, parts[:1], via)
    return True


def _anchored(graph, ids: np.ndarray, item: slice, via: str) -> bool:
    """A slice with literal bounds (``x[:, :-2]``, ``x[:, 3:]``) picks the
    same channels after pruning if the positions between each bound and
    the end it counts from never go: those are frozen, the others pass
    (SOLOv2 drops the two coordinate channels it concatenated,
    ``kernel_feat[:, :-2]``, and prunes the features before them). A
    bound computed in Python from a width, that is no equal part, is
    caught by verification."""
    if item.step not in (None, 1):
        return False
    bounds = [b for b in (item.start, item.stop) if b is not None]
    if not all(type(b) is int for b in bounds):
        return False
    size = len(ids)
    for bound in bounds:
        fixed = ids[:min(bound, size)] if bound >= 0 else ids[bound:]
        graph.freeze(fixed, f'fixed bound of a slice in {via}')
    return True


def _advanced_index(ctx: OpContext, x, out, index) -> None:
    """``table[idx]``: gathered positions follow fixed indices, so the
    indexed dimension is frozen; a single index tensor on dim 0 keeps the
    other dims' labels."""
    graph = ctx.graph
    labels = graph.get(x)
    pos = 0
    if isinstance(index, tuple):  # ``table[:, idx]``: one tensor, full
        pos = len(index) - 1  # slices before it
        if pos >= 1 and all(
                isinstance(i, slice) and i == slice(None)
                for i in index[:-1]):
            index = index[-1]
    if isinstance(index, (torch.Tensor, list)) and not (
            isinstance(index, torch.Tensor) and index.dtype == torch.bool):
        idx = np.asarray(index.cpu() if isinstance(index, torch.Tensor) else
                         index)
        shift = idx.ndim - 1
        new = []
        for block in labels:
            if pos in block.dims:
                axis = block.dims.index(pos)
                graph.freeze(block.ids, f'indexed by a tensor in {ctx.via}')
                ids = np.take(block.ids, idx, axis=axis)
                dims = list(block.dims[:axis]) + list(
                    range(pos, pos + idx.ndim)) + [
                        d + shift for d in block.dims[axis + 1:]
                    ]
                new.append(Block(tuple(dims), ids))
            else:
                new.append(
                    Block(tuple(d + shift if d > pos else d
                                for d in block.dims), block.ids))
        graph.set(out, new)
        return
    ctx.freeze_inputs(f'advanced indexing in {ctx.via}')
    ctx.frozen_output(f'advanced indexing in {ctx.via}')


@register(method('narrow'), function('narrow'), method('select'),
          function('select'))
def narrow(ctx: OpContext) -> None:
    x = ctx.inputs[0]
    dim = _norm_dim(ctx.arg(1, 'dim'), x.dim())
    for block in ctx.graph.get(x):
        if dim in block.dims:
            ctx.graph.freeze(block.ids, f'fixed slice in {ctx.via}')
    ctx.frozen_output(f'fixed slice in {ctx.via}')
