"""Layers with weights: convolutions, linear layers, matrix products.

A layer's output channels are its weight's output rows: the output reuses the
ids of ``weight`` dim 0, so whatever the output meets later is tied back to
those rows. Its input channels (weight dim 1) are tied to the input's.
"""
import numpy as np
import torch

from mmcpd.comb.couple import broadcast_keys, couple
from mmcpd.comb.labels import (Block, carries_channels_off, dim_ids,
                               rows_carry_channels)
from mmcpd.comb.handlers.base import OpContext, function, method, register


def _per_sample(ctx: OpContext, t: torch.Tensor, channel_dim: int) -> int:
    """Positions of ``t`` per channel and per sample of the traced batch
    (windows or frames folded into the batch dim count)."""
    return int(round(t.numel() / max(t.shape[channel_dim], 1) /
                     max(ctx.graph.batch, 1)))


def _macs(ctx: OpContext, weight: torch.Tensor, per_element: int) -> None:
    name = ctx.graph.leaf_name(weight)
    if name is not None:
        ctx.graph.add_param_macs(name, per_element)


def _acts(ctx: OpContext, weight: torch.Tensor, dim: int,
          per_channel: int) -> None:
    """Record that each channel along ``dim`` of ``weight`` writes
    ``per_channel`` activation elements per sample."""
    name = ctx.graph.leaf_name(weight)
    if name is not None:
        ctx.graph.add_channel_acts(name, dim, per_channel)


def _bias(ctx: OpContext, bias, out_ids: np.ndarray) -> None:
    if isinstance(bias, torch.Tensor):
        ids = ctx.graph.leaf_dim(bias, 0)
        if ids is None and bias.dim() == 1:  # computed from parameters
            ids = dim_ids(ctx.graph, ctx.graph.get(bias), 0)  # (Swin-V2)
        if ids is not None:
            ctx.graph.union(out_ids, ids, ctx.via)
        else:
            ctx.graph.freeze(out_ids, f'computed bias in {ctx.via}')


def _tuple(value, n: int) -> tuple:
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return (value, ) * n


def _positions_kept(ctx: OpContext, x, weight, out, channel_dims) -> list:
    """Labels of ``x`` off its channel dims that a convolution carries to
    its output one to one (classes as tokens: OCRNet's object context).

    A dim passes through where the kernel is 1 wide along it, with stride
    1 and no padding: each output position is its input position. Other
    labelled dims (a kernel, stride or padding mixes positions along them)
    are frozen: removing a position would shift its neighbours.
    """
    graph = ctx.graph
    nd = x.dim()
    n = nd - 2
    stride = _tuple(ctx.arg(3, 'stride', 1), n)
    padding = ctx.arg(4, 'padding', 0)
    padding = (0, ) * n if padding == 'valid' else _tuple(padding, n)
    kept = []
    for block in graph.get(x):
        if set(block.dims) & set(channel_dims):
            continue
        ok = all(
            d == 0 or (weight.shape[d] == 1 and stride[d - 2] == 1 and
                       padding[d - 2] in (0, 'same') and
                       out.shape[d] == x.shape[d]) for d in block.dims)
        if ok:
            kept.append(block)
        else:
            graph.freeze(block.ids, f'{ctx.via} mixes labelled positions')
    return kept


def attr_update(ctx: OpContext, attr: str, ids: np.ndarray) -> None:
    """Record that ``scope.attr`` drops by one per removed id of ``ids``."""
    if ctx.module is not None and hasattr(ctx.module, attr):
        ctx.graph.attr_rules.append(
            (ctx.scope, attr, getattr(ctx.module, attr), ids))


@register(function('conv1d'), function('conv2d'), function('conv3d'))
def conv(ctx: OpContext) -> None:
    """Convolution, plain, grouped or depthwise.

    With ``groups == 1`` input channel ``i`` is weight column ``i``. Grouped
    convolutions keep their groups balanced: with one input channel per
    group (depthwise), removing a channel removes its whole group and
    ``groups`` shrinks. Otherwise the input channels and the output rows
    are *balanced*: every unit has as many of them in each conv group (see
    :mod:`..resolve`), at any offsets, so that a channel shuffle between
    grouped convs (ShuffleNet V1) can send a unit's rows to other offsets
    in each group, and the next conv keep other columns in each group
    (``Member.groups``).
    """
    graph = ctx.graph
    x, weight = ctx.arg(0, 'input'), ctx.arg(1, 'weight')
    bias, groups = ctx.arg(2, 'bias'), ctx.arg(6, 'groups', 1) or 1
    out = ctx.outputs[0]
    out_ids = graph.leaf_dim(weight, 0, 'out')
    if out_ids is None:
        computed_weight_conv(ctx)
        return
    in_ids = graph.leaf_dim(weight, 1, 'in') if weight.shape[1] > 1 \
        and groups == 1 else None
    x_ids = dim_ids(graph, graph.get(x), 1)
    c_in, c_out = x.shape[1], weight.shape[0]
    if groups == 1:
        if x_ids is not None:
            graph.union(x_ids, in_ids, ctx.via)
        elif c_in > 1:
            graph.freeze(in_ids, f'unlabelled input of {ctx.via}')
    elif weight.shape[1] == 1:  # one input channel per group: depthwise
        per_group = c_out // groups
        grouped = out_ids.reshape(groups, per_group)
        if x_ids is not None:
            graph.union(grouped, x_ids.reshape(groups, 1), ctx.via)
        else:
            graph.freeze(out_ids, f'unlabelled input of {ctx.via}')
        attr_update(ctx, 'groups', out_ids[::per_group])
    else:
        per_group = weight.shape[1]
        cols = graph.grouped_in_dim(weight, groups)
        if cols is None:  # dim 1 read by another op: columns tied
            in_ids = graph.leaf_dim(weight, 1, 'in')
            cols = np.broadcast_to(in_ids[None], (groups, per_group))
        else:  # each conv group keeps as many columns as the others
            graph.balanced_inputs.append(cols)
        if x_ids is not None:
            graph.union(x_ids.reshape(groups, per_group), cols, ctx.via)
        else:
            graph.freeze(cols, f'unlabelled input of {ctx.via}')
        # each conv group keeps as many rows as the others: which ones may
        # differ (a channel shuffle after it mixes the offsets)
        graph.balanced.append(out_ids.reshape(groups, c_out // groups))
    _bias(ctx, bias, out_ids)
    spatial = _per_sample(ctx, out, 1)
    if not carries_channels_off(graph, x, 1):  # else an op (comb/flops.py)
        _macs(ctx, weight, spatial)
    _acts(ctx, weight, 0, spatial)
    kept = _positions_kept(ctx, x, weight, out, [1])
    graph.set(out, kept + [Block((1, ), out_ids)])


def _leaf_key(graph, ids: np.ndarray):
    """The parameter dim (``(name, dim)``) whose ids are ``ids``, or None."""
    for key, leaf in graph.leaf_ids.items():
        if leaf.shape == ids.shape and leaf[0] == ids[0] and \
                np.array_equal(leaf, ids):
            return key
    return None


def computed_weight_conv(ctx: OpContext) -> None:
    """A plain convolution (``groups == 1``) whose weight is computed from
    a parameter in the forward: weight standardisation (mmcv's
    ``ConvWS2d``: ``(w - mean) / std`` per output row), weight norm.

    The computed weight carries the labels of the parameter it is made
    from: rows (dim 0) and columns (dim 1) still name that parameter's
    rows and columns, and the reductions that made it (a mean over each
    row) are channel-mixing sites that the masked model computes over the
    kept columns, as the sliced one does. So the output channels are the
    parameter's rows and the input channels its columns, as for a
    parameter weight; the parameter's dim 0 becomes an ``'out'`` member.
    Where the rows are not one parameter's dim 0 (a weight mixed from
    several, a grouped conv), the rows cannot be followed: inputs and
    output are frozen.
    """
    graph = ctx.graph
    x, weight = ctx.arg(0, 'input'), ctx.arg(1, 'weight')
    bias, groups = ctx.arg(2, 'bias'), ctx.arg(6, 'groups', 1) or 1
    out = ctx.outputs[0]
    labels = graph.get(weight)
    out_ids = dim_ids(graph, labels, 0)
    in_ids = dim_ids(graph, labels, 1)
    key = _leaf_key(graph, out_ids) if out_ids is not None else None
    if groups != 1 or key is None or (in_ids is None and
                                      weight.shape[1] > 1):
        ctx.freeze_inputs(f'computed weight in {ctx.via}')
        ctx.frozen_output(f'computed weight in {ctx.via}')
        return
    graph.leaf_roles[key] = 'out'
    in_key = _leaf_key(graph, in_ids) if in_ids is not None else None
    if in_key is not None and in_key[0] == key[0]:
        graph.leaf_roles[in_key] = 'in'
    x_ids = dim_ids(graph, graph.get(x), 1)
    if in_ids is not None:
        if x_ids is not None:
            graph.union(x_ids, in_ids, ctx.via)
        else:
            graph.freeze(in_ids, f'unlabelled input of {ctx.via}')
    for block in labels:  # kernel positions: never removed
        if not set(block.dims) & {0, 1}:
            graph.freeze(block.ids, f'kernel of {ctx.via}')
    _bias(ctx, bias, out_ids)
    kept = _positions_kept(ctx, x, weight, out, [1])
    graph.set(out, kept + [Block((1, ), out_ids)])


@register(
    function('conv_transpose1d'), function('conv_transpose2d'),
    function('conv_transpose3d'))
def conv_transpose(ctx: OpContext) -> None:
    """Transposed convolution: weight is (in, out / groups, ...)."""
    graph = ctx.graph
    x, weight = ctx.arg(0, 'input'), ctx.arg(1, 'weight')
    bias, groups = ctx.arg(2, 'bias'), ctx.arg(6, 'groups', 1) or 1
    out = ctx.outputs[0]
    if groups != 1 or graph.leaf_name(weight) is None:
        ctx.freeze_inputs(f'grouped or computed {ctx.via}')
        ctx.frozen_output(f'grouped or computed {ctx.via}')
        return
    in_ids = graph.leaf_dim(weight, 0, 'in')
    out_ids = graph.leaf_dim(weight, 1, 'out')
    x_ids = dim_ids(graph, graph.get(x), 1)
    if x_ids is not None:
        graph.union(x_ids, in_ids, ctx.via)
    else:
        graph.freeze(in_ids, f'unlabelled input of {ctx.via}')
    _bias(ctx, bias, out_ids)
    _macs(ctx, weight, _per_sample(ctx, x, 1))
    _acts(ctx, weight, 1, _per_sample(ctx, out, 1))
    kept = _positions_kept(ctx, x, weight, out, [1])
    graph.set(out, kept + [Block((1, ), out_ids)])


@register(function('linear'))
def linear(ctx: OpContext) -> None:
    """``y = x W^T + b``: x's last dim is W's dim 1, y's last dim W's dim 0."""
    graph = ctx.graph
    x, weight = ctx.arg(0, 'input'), ctx.arg(1, 'weight')
    bias = ctx.arg(2, 'bias')
    out = ctx.outputs[0]
    if graph.leaf_name(weight) is None:
        _matmul_like(ctx, x, weight, transpose_b=True)
        return
    out_ids = graph.leaf_dim(weight, 0, 'out')
    in_ids = graph.leaf_dim(weight, 1, 'in')
    nd = x.dim()
    x_keys = list(range(nd - 1)) + ['k']
    labels = couple(graph, [(graph.get(x), tuple(x.shape), x_keys),
                            ([Block((0, ), in_ids)], tuple(weight.shape[1:]),
                             ['k'])], ctx.via)
    _bias(ctx, bias, out_ids)
    tokens = _per_sample(ctx, x, nd - 1)
    _acts(ctx, weight, 0, tokens)
    graph.set(out, labels + [Block((nd - 1, ), out_ids)])
    if not rows_carry_channels(graph, x):  # else an op (comb/flops.py)
        _macs(ctx, weight, tokens)


def _matmul_like(ctx: OpContext, a, b, transpose_b: bool = False) -> None:
    """``a @ b`` with numpy broadcasting of the batch dims."""
    graph = ctx.graph
    out = ctx.outputs[0]
    if a.dim() < 2 or b.dim() < 2:
        ctx.freeze_inputs(f'vector product in {ctx.via}')
        ctx.frozen_output(f'vector product in {ctx.via}')
        return
    nd = out.dim()
    batch = list(out.shape[:-2])
    a_keys = broadcast_keys(a.shape[:-2], batch) + [nd - 2, 'k']
    if transpose_b:
        b_keys = broadcast_keys(b.shape[:-2], batch) + [nd - 1, 'k']
    else:
        b_keys = broadcast_keys(b.shape[:-2], batch) + ['k', nd - 1]
    labels = couple(graph, [(graph.get(a), tuple(a.shape), a_keys),
                            (graph.get(b), tuple(b.shape), b_keys)], ctx.via)
    graph.set(out, labels)


#: ``a @ b`` in all its spellings, and ``bias + a @ b``.
MATMULS = [
    *function('matmul'), method('matmul'), method('__matmul__'),
    method('__rmatmul__'), *function('bmm'), method('bmm'), *function('mm'),
    method('mm')
]
ADDMMS = [
    *function('addmm'), method('addmm'), *function('baddbmm'),
    method('baddbmm')
]


def matmul_operands(ctx: OpContext):
    """``(a, b)`` of a call of :data:`MATMULS` or :data:`ADDMMS`."""
    if ctx.func in ADDMMS:
        return tuple(ctx.inputs[1:3])
    a, b = ctx.inputs[:2]
    return (b, a) if ctx.name == '__rmatmul__' else (a, b)


@register(*MATMULS)
def matmul(ctx: OpContext) -> None:
    _matmul_like(ctx, *matmul_operands(ctx))


@register(*ADDMMS)
def addmm(ctx: OpContext) -> None:
    """``bias + a @ b``: the product, then the bias broadcast onto it."""
    bias = ctx.inputs[0]
    _matmul_like(ctx, *matmul_operands(ctx))
    out = ctx.outputs[0]
    items = [(ctx.graph.get(out), tuple(out.shape), list(range(out.dim()))),
             (ctx.graph.get(bias), tuple(bias.shape),
              broadcast_keys(bias.shape, out.shape))]
    ctx.graph.set(out, couple(ctx.graph, items, ctx.via))


@register(function('embedding'))
def embedding(ctx: OpContext) -> None:
    """Rows of an embedding table: the output's last dim is weight dim 1."""
    weight = ctx.arg(1, 'weight')
    out = ctx.outputs[0]
    ids = ctx.graph.leaf_dim(weight, 1, 'out')
    if ids is not None:
        ctx.graph.set(out, [Block((out.dim() - 1, ), ids)])
