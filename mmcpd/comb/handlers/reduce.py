"""Reductions, pooling, resizing and padding.

A reduction over a batch, token or spatial dim drops it and leaves the
channels alone. A reduction over a channel dim (a channel mean, max, norm,
logsumexp, ...) mixes the channels: it is recorded by
:func:`~.mixing.mix` so that the masked model reduces over the kept
channels only, as the sliced model does. Pooling, resizing and padding
change only spatial dims; channels pass through. When such an op changes
the size of a labelled dim, those channels are frozen.
"""
from typing import List

import torch
import torch.nn.functional as F

from mmcpd.comb.couple import couple
from mmcpd.comb.handlers.base import OpContext, function, method, register
from mmcpd.comb.handlers.mixing import counted, mix

_REDUCE = [
    'mean', 'sum', 'nansum', 'amax', 'amin', 'std', 'var', 'norm',
    'logsumexp', 'prod', 'argmax', 'argmin', 'all', 'any', 'count_nonzero',
    'median', 'nanmedian', 'mode', 'nanmean', 'max', 'min', 'std_mean',
    'var_mean', 'aminmax'
]
# where the ``dim`` argument sits, when not second, and its default
_DIM_AT = {'norm': 2, 'linalg_vector_norm': 2}
_DIM_DEFAULT = {'mode': -1}
_SPATIAL = [
    'avg_pool1d', 'avg_pool2d', 'avg_pool3d', 'max_pool1d', 'max_pool2d',
    'max_pool3d', 'adaptive_avg_pool1d', 'adaptive_avg_pool2d',
    'adaptive_avg_pool3d', 'adaptive_max_pool1d', 'adaptive_max_pool2d',
    'adaptive_max_pool3d', 'lp_pool1d', 'lp_pool2d', 'interpolate',
    'upsample', 'upsample_nearest', 'upsample_bilinear', 'pad',
    'max_pool1d_with_indices', 'max_pool2d_with_indices',
    'grid_sample', 'fractional_max_pool2d'
]


def _funcs(names, module=None):
    found = []
    for name in names:
        found.append(getattr(torch.Tensor, name, None))
        found.append(getattr(torch, name, None))
        found.append(getattr(F, name, None))
    return [f for f in found if f is not None]


def _reduced_dims(ctx: OpContext, nd: int) -> List[int]:
    """The dims a reduction runs over (all of them when none is given)."""
    dim = ctx.arg(_DIM_AT.get(ctx.name, 1), 'dim')
    if dim is None:
        dim = ctx.kwargs.get('axis', _DIM_DEFAULT.get(ctx.name))
    if isinstance(dim, int) and not isinstance(dim, bool):
        dim = [dim]
    if not isinstance(dim, (list, tuple)) or not len(dim):
        return list(range(nd))  # no dim (or p / unbiased in its place)
    return [d % nd for d in dim]


@counted(_funcs(_REDUCE), torch.linalg.vector_norm)
def reduction(ctx: OpContext) -> None:
    """Reduced dims disappear (or become size 1); the others pass. A
    reduction over channels is a channel-mixing site (see ``mix``)."""
    ins = ctx.inputs
    if ctx.name in ('max', 'min') and len(ins) > 1:
        # elementwise max(a, b)
        from mmcpd.comb.handlers.pointwise import pointwise
        return pointwise(ctx)
    x, outs = ins[0], ctx.outputs
    out_dims = outs[0].dim() if outs else 0
    labels = mix(ctx, x, _reduced_dims(ctx, x.dim()), False, out_dims)
    for out in ctx.outputs:
        ctx.graph.set(out, labels)


@register(*_funcs(_SPATIAL))
def spatial(ctx: OpContext) -> None:
    """Dims that keep their size keep their channels."""
    x = ctx.inputs[0]
    outs = ctx.outputs
    out = outs[0]
    keys = []
    for d in range(x.dim()):
        same = d < out.dim() and x.shape[d] == out.shape[d]
        keys.append(d if same else None)
    graph = ctx.graph
    for block in graph.get(x):
        for d in block.dims:
            if keys[d] is None:
                graph.freeze(block.ids, f'{ctx.via} resizes channels')
    labels = couple(graph, [(graph.get(x), tuple(x.shape), keys)], ctx.via)
    for o in outs:
        if o.shape == out.shape and o.dtype.is_floating_point:
            graph.set(o, labels)


@register(
    method('roll'), function('roll'), method('flip'), function('flip'),
    method('cumsum'), function('cumsum'), method('cumprod'),
    function('cumprod'), method('sort'), function('sort'),
    function('pixel_shuffle'), function('pixel_unshuffle'))
def along_dim(ctx: OpContext) -> None:
    """Ops that mix positions along some dims: fine on spatial dims, and
    freezing on channel dims (they would move or mix channels)."""
    x, outs = ctx.inputs[0], ctx.outputs
    graph = ctx.graph
    if ctx.name in ('pixel_shuffle', 'pixel_unshuffle'):
        dims = [x.dim() - 3]
    else:
        dims = ctx.arg(2 if ctx.name == 'roll' else 1, 'dims' if ctx.name in (
            'roll', 'flip') else 'dim')
        if dims is None:
            dims = list(range(x.dim()))
        dims = [dims] if isinstance(dims, int) else list(dims)
        dims = [d % x.dim() for d in dims]
    labels = graph.get(x)
    for block in labels:
        if set(block.dims).intersection(dims):
            graph.freeze(block.ids, f'{ctx.via} moves channels')
    if outs and outs[0].shape == x.shape:
        graph.set(outs[0], labels)
    else:
        ctx.frozen_output(f'{ctx.via} moves channels')
