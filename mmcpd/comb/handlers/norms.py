"""Normalisation layers.

BatchNorm and InstanceNorm act per channel: their affine parameters and
running statistics shrink with the channel. GroupNorm keeps its groups
equal: a unit is a whole group (``num_groups`` shrinks), which leaves the
statistics of the other groups exactly as they were; with one group (a
LayerNorm over channels and space, as in PoolFormer) its channels go one by
one, as a LayerNorm's do. LayerNorm over channels
ties all of them into its statistics: the groups it normalises are recorded
so that a masked model can compute the statistics over the kept channels
only (see :func:`mmcpd.prune.surgery.mask.exact_norms`), which is what the
sliced model computes.
"""
from mmcpd.comb.couple import couple
from mmcpd.comb.labels import dim_ids
from mmcpd.comb.handlers.base import OpContext, function, register
from mmcpd.comb.handlers.layers import attr_update


def _per_channel(ctx: OpContext, x, params) -> None:
    out = ctx.outputs[0]
    nd = x.dim()
    items = [(ctx.graph.get(x), tuple(x.shape), list(range(nd)))]
    for p in params:
        if p is not None and p.numel() > 1:
            items.append((ctx.graph.get(p), tuple(p.shape), [1]))
    ctx.graph.set(out, couple(ctx.graph, items, ctx.via))


@register(function('batch_norm'), function('instance_norm'))
def per_channel_norm(ctx: OpContext) -> None:
    """BatchNorm / InstanceNorm: statistics and affine per channel."""
    x = ctx.arg(0, 'input')
    params = [ctx.arg(i, n) for i, n in
              ((1, 'running_mean'), (2, 'running_var'), (3, 'weight'),
               (4, 'bias'))]
    _per_channel(ctx, x, params)


@register(function('layer_norm'), function('rms_norm'))
def layer_norm(ctx: OpContext) -> None:
    graph = ctx.graph
    x, shape = ctx.arg(0, 'input'), ctx.arg(1, 'normalized_shape')
    weight = ctx.arg(2, 'weight')
    bias = ctx.arg(3, 'bias') if ctx.name == 'layer_norm' else None
    out = ctx.outputs[0]
    nd, k = x.dim(), len(tuple(shape))
    items = [(graph.get(x), tuple(x.shape), list(range(nd)))]
    for p in (weight, bias):
        if p is not None:
            dims = list(range(nd - k, nd))
            items.append((graph.get(p), tuple(p.shape), dims))
    labels = couple(graph, items, ctx.via)
    graph.set(out, labels)
    ids = dim_ids(graph, labels, nd - 1)
    if ids is None:
        return
    if k > 1:
        graph.freeze(ids, f'{ctx.via} normalises over several dims')
        return
    graph.channel_norms.append((ctx.scope, 'layer_norm', ids))
    attr_update(ctx, 'normalized_shape', ids)


@register(function('group_norm'))
def group_norm(ctx: OpContext) -> None:
    graph = ctx.graph
    x, num_groups = ctx.arg(0, 'input'), ctx.arg(1, 'num_groups')
    weight, bias = ctx.arg(2, 'weight'), ctx.arg(3, 'bias')
    _per_channel(ctx, x, [weight, bias])
    ids = dim_ids(graph, graph.get(ctx.outputs[0]), 1)
    if ids is None:
        return
    if num_groups > 1:
        grouped = ids.reshape(num_groups, -1)
        graph.union_along(grouped, [1])
        attr_update(ctx, 'num_groups', grouped[:, 0])
    # else one group over all channels, a LayerNorm over (C, H, W): its
    # channels go one by one, the statistics over the kept ones (exact_norms)
    graph.channel_norms.append((ctx.scope, 'group_norm', ids))
