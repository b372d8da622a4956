"""Ops that mix positions along a dimension: softmax, p-norm normalisation,
local response norm (and, through :func:`mix`, the reductions).

Along batch, token or spatial dims these ops leave channels alone. Along a
channel dim they read all channels at once, so a masked model (removed
channels zeroed, but still there) computes something other than the sliced
one: a mean still divides by the old count, a max can pick a zero, a
softmax gives the removed channels weight, a local response norm's window
still spans them. Each such call is recorded as a site; under
:func:`mmcpd.prune.surgery.mask.exact_norms` the masked model runs the op on
the kept channels only (removed ones output zero where the channel dim
survives), which is exactly what the sliced model computes.

Where that cannot be done, the channels are frozen with a warning that names
the op and the module: the op runs in the model's own forward (no module to
find it by), or it mixes several channel dims at once.
"""
from typing import Sequence

import torch

from mmcpd.comb.couple import couple
from mmcpd.comb.labels import Labels
from mmcpd.comb.handlers.base import OpContext, function, method, register

#: torch functions whose calls are counted per module call, so that a
#: masked model finds the traced call again (see ``NormSite.index``).
COUNTED = set()


def counted(*funcs):
    """Register ``funcs`` as channel-mixing ops (their calls are counted)."""
    found = [f for group in funcs
             for f in (group if isinstance(group, list) else [group])
             if f is not None]
    COUNTED.update(found)
    return register(*found)


def mix(ctx: OpContext, x, dims: Sequence[int], keeps: bool,
        out_dims: int = 0) -> Labels:
    """Record an op on ``x`` that mixes positions along ``dims``.

    Args:
        ctx (OpContext): The op call.
        x (Tensor): The input whose positions are mixed.
        dims (list[int]): The mixed dims of ``x``.
        keeps (bool): The output has the shape of ``x`` (softmax); otherwise
            ``dims`` are reduced (to size 1 when ``out_dims == x.dim()``).
        out_dims (int): Number of dims of the output of a reduction.

    Returns:
        list[Block]: Labels of the output.
    """
    graph = ctx.graph
    labels = graph.get(x)
    nd = x.dim()
    dims = sorted({d % nd for d in dims}) if nd else []
    mixed = set(dims)
    full = [b for b in labels if set(b.dims) <= mixed]
    partial = [b for b in labels if set(b.dims) & mixed and b not in full]
    if full:
        if len(full) == 1 and len(full[0].dims) == 1 and not partial \
                and ctx.scope:
            block = full[0]
            graph.channel_mixes.append(
                (ctx.scope, ctx.name, ctx.call_index, block.dims[0], keeps,
                 block.ids))
        else:
            why = ('outside any submodule' if not ctx.scope else
                   'over several channel dims at once')
            reason = f'`{ctx.name}` in `{ctx.scope or "model"}` mixes ' \
                     f'channels {why}'
            for block in full:
                graph.freeze(block.ids, reason)
            graph.warnings.append(reason)
    # a joint block mixed along some of its axes (a head's dims) loses whole
    # slabs along the others: every mix stays inside one unit
    if keeps:
        for block in partial:
            graph.union_along(
                block.ids,
                [i for i, d in enumerate(block.dims) if d in mixed])
        return labels
    keepdim = out_dims == nd
    keys, o = [], 0
    for d in range(nd):
        if d in mixed:
            keys.append(None)
            o += keepdim
        else:
            keys.append(o)
            o += 1
    return couple(graph, [(labels, tuple(x.shape), keys)], ctx.via)


def _softmax_dim(ctx: OpContext, nd: int) -> int:
    dim = ctx.arg(1, 'dim')
    if dim is None:  # torch's legacy implicit dim
        dim = 0 if nd in (0, 1, 3) else 1
    return dim


@counted(*[[method(n), getattr(torch.special, n, None)] + function(n)
           for n in ('softmax', 'log_softmax', 'softmin')])
def softmax(ctx: OpContext) -> None:
    """``softmax(x, dim)``: every position along ``dim`` is mixed."""
    x = ctx.inputs[0]
    labels = mix(ctx, x, [_softmax_dim(ctx, x.dim())], keeps=True)
    for out in ctx.outputs:
        ctx.graph.set(out, labels)


@counted(function('normalize'))
def normalize(ctx: OpContext) -> None:
    """``F.normalize(x, p, dim=1)``: divides by the p-norm along ``dim``."""
    x = ctx.inputs[0]
    labels = mix(ctx, x, [ctx.arg(2, 'dim', 1)], keeps=True)
    ctx.graph.set(ctx.outputs[0], labels)


@counted(function('local_response_norm'))
def local_response_norm(ctx: OpContext) -> None:
    """``F.local_response_norm(x, size)``: a window over the channels (dim
    1); in the sliced model the window spans kept neighbours only."""
    x = ctx.inputs[0]
    labels = mix(ctx, x, [1], keeps=True)
    ctx.graph.set(ctx.outputs[0], labels)
