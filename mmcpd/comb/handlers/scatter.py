"""Writes into parts of a tensor, and reads of positions by index.

A write into part of a tensor (``x[idx] = v``, ``index_put_``,
``scatter_``) mixes what was there with what comes in: both are frozen.
One such write is exact all the same: rows scattered into a zero-filled
buffer along its first dim, as MMDetection's RoI extractors gather each
FPN level's RoI features (``roi_feats = feats[0].new_zeros(n,
self.out_channels, 7, 7)``, then ``roi_feats[inds] = level_feats``). Every
other dim of the value is the buffer's, so the channels pass into it (the
writes of several levels are tied), and a removed channel is zero in the
buffer as in the masked model. The buffer's width must follow: a size
given by a module attribute (``out_channels``) follows the channels;
a literal one freezes them.
"""
import torch

from mmcpd.comb.couple import couple
from mmcpd.comb.labels import Block
from mmcpd.comb.sizes import AttrInt
from mmcpd.comb.handlers.base import OpContext, function, method, register


def _first_dim_index(index) -> bool:
    """``idx``, ``a:b`` or ``(idx, :, ...)``: an index of dim 0 only."""
    if isinstance(index, tuple):
        if not index or any(i != slice(None) for i in index[1:]):
            return False
        index = index[0]
    if isinstance(index, torch.Tensor):
        return index.dtype != torch.bool or index.dim() == 1
    return isinstance(index, (list, slice))


def _follow_sizes(ctx: OpContext, sizes, labels) -> None:
    """The buffer's size of each labelled dim follows its channels (a
    module attribute) or freezes them (a literal)."""
    graph = ctx.graph
    for block in labels:
        for axis, dim in enumerate(block.dims):
            size = sizes[dim] if dim < len(sizes) else None
            ids = block.ids if len(block.dims) == 1 else None
            if isinstance(size, AttrInt) and ids is not None:
                graph.attr_rules.append(
                    (size.scope, size.attr, int(size), ids))
            else:
                graph.freeze(block.ids, f'{ctx.via} writes channels into a '
                             f'buffer of a fixed width ({size})')


def scatter_into_zeros(ctx: OpContext) -> bool:
    """``buffer[idx] = value`` into a ``new_zeros`` buffer along dim 0 (see
    the module's docstring); False where the write is not one."""
    graph = ctx.graph
    if ctx.name != '__setitem__' or len(ctx.args) < 3:
        return False
    dest, index, value = ctx.args[:3]
    sizes = graph.zero_buffers.get(dest)
    if sizes is None or not isinstance(value, torch.Tensor) or \
            value.dim() != dest.dim() or \
            tuple(value.shape[1:]) != tuple(dest.shape[1:]) or \
            not _first_dim_index(index):
        return False
    rows = [b for b in graph.get(value) if 0 in b.dims]
    for block in rows:
        graph.freeze(block.ids, f'{ctx.via} writes labelled rows')
    keys = [None] + list(range(1, dest.dim()))
    incoming = [b for b in graph.get(value) if 0 not in b.dims]
    before = graph.get(dest)
    if before:  # another level's rows came first: the same channels
        labels = couple(graph, [(before, tuple(dest.shape), keys),
                                (incoming, tuple(value.shape), keys)],
                        ctx.via)
    else:
        labels = [Block(b.dims, b.ids) for b in incoming]
        _follow_sizes(ctx, sizes, labels)
    graph.set(dest, labels)
    return True


@register(method('__setitem__'), method('index_put_'),
          method('masked_scatter_'), method('scatter_'))
def setitem(ctx: OpContext) -> None:
    """Writes into parts of a tensor: what meets there is frozen, unless
    rows are scattered into a zero-filled buffer
    (:func:`scatter_into_zeros`)."""
    if not scatter_into_zeros(ctx):
        ctx.freeze_inputs(f'in-place write in {ctx.via}')


def _constant_along(index: torch.Tensor, dims) -> bool:
    """Whether ``index`` holds the same value all along each of ``dims``."""
    return all(bool((index == index.narrow(d, 0, 1)).all()) for d in dims)


@register(*function('gather'), method('gather'))
def gather(ctx: OpContext) -> None:
    """``torch.gather(x, dim, index)``: ``out[..., i, ...] = x[...,
    index[..., i, ...], ...]`` along ``dim``. The positions picked along
    ``dim`` are fixed indices (frozen where they are channels, as advanced
    indexing). A channel dim passes through where the index spans it and is
    the same all along it (``topk_indices.unsqueeze(-1).repeat(1, 1, C)``):
    output channel ``c`` is input channel ``c``, zero where it is removed.
    Elsewhere the channels are frozen."""
    graph = ctx.graph
    x, index = ctx.arg(0, 'input'), ctx.arg(2, 'index')
    out = ctx.outputs[0]
    dim = ctx.arg(1, 'dim') % max(x.dim(), 1)
    kept = []
    for block in graph.get(x):
        if dim in block.dims:
            graph.freeze(block.ids, f'{ctx.via} picks labelled positions')
        elif all(index.shape[d] == x.shape[d] for d in block.dims) and \
                _constant_along(index, block.dims):
            kept.append(block)
        else:
            graph.freeze(block.ids, f'{ctx.via} picks channels by index')
    for block in graph.get(index):
        graph.freeze(block.ids, f'{ctx.via} reads channels as indices')
    graph.set(out, kept)


@register(*function('nonzero'), method('nonzero'), *function('argwhere'),
          method('argwhere'))
def nonzero(ctx: OpContext) -> None:
    """``nonzero`` / ``argwhere``: the output holds positions of the input
    as data (which ones change when channels go), and no channels: the
    input's labelled dims are frozen, with a warning that names the op;
    the output is unlabelled."""
    reason = f'`{ctx.name}` in `{ctx.scope or "model"}` reads the ' \
        'positions of channels as data'
    labelled = False
    for t in ctx.inputs:
        for block in ctx.graph.get(t):
            ctx.graph.freeze(block.ids, reason)
            labelled = True
    if labelled:
        ctx.graph.warnings.append(reason)
