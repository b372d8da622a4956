"""FLOPs of the ops that have no weight, counted the way mmengine counts.

A layer with a weight costs ``param_macs[weight]`` multiply-accumulates per
weight element (recorded by its handler). What else a forward computes is
counted here, by one rule per op kind, with mmengine's (fvcore's)
conventions (:mod:`mmengine.analysis.jit_handles`), so that the comb's FLOPs
of a model match ``mmengine.analysis.get_model_complexity_info`` of its
deployed forward:

======================================  ====================================
op                                      FLOPs
======================================  ====================================
``a @ b`` of activations (matmul, bmm,  ``numel(out) * K`` (one per
mm, addmm, baddbmm, einsum, linear      multiply-add)
with a computed weight)
``scaled_dot_product_attention``        ``QK^T`` and ``attention x V``:
                                        ``B * L * S * (E + Ev)``
batch_norm (eval)                       ``numel(x) * (2 if affine else 1)``
layer_norm, group_norm, instance_norm   ``numel(x) * (5 if affine else 4)``
interpolate, nearest / bilinear (2d)    ``numel(out) * 1`` / ``* 4``
adaptive_avg_pool2d                     ``numel(x)``
grid_sample                             ``numel(out) * 4``
conv with a computed weight, or         ``numel(out) * weight[1] * k``
channels folded into its batch
conv_transpose, grouped or with a       ``numel(x) * weight[1] * k``
computed weight                         (``weight[1]`` = out / groups)
======================================  ====================================

(mmengine has no handle for ``scaled_dot_product_attention``;
:func:`mmcpd.deploy.model_complexity` adds one with the formula above.)

An op whose outputs reach no output of the model (YOLOv3's MobileNetV2
computes its last ``conv2`` and drops it) costs nothing, weight or not:
mmengine's JIT trace drops such dead code, and after the forward
:class:`~mmcpd.comb.liveness.Liveness` finds it and its costs are removed.

Each count is split over the labelled dims of the op's index space (for a
matmul: batch, rows, the contracted dim and columns): it is a product over
those dims, so removing a channel removes its share, and
:class:`~mmcpd.prune.cost.CostModel` counts it after pruning as
``macs * prod_d alive_d``.
"""
from typing import Callable, Dict, Hashable, List, Sequence, Tuple

import numpy as np
import torch

from mmcpd.comb.handlers.base import OpContext, function, register_in
from mmcpd.comb.handlers.einsum import parse_einsum
from mmcpd.comb.handlers.layers import ADDMMS, MATMULS, matmul_operands
from mmcpd.comb.labels import Labels, carries_channels_off, rows_carry_channels

FlopRule = Callable[[OpContext], None]
#: torch function -> rule that records its MACs on the graph.
FLOP_RULES: Dict[object, FlopRule] = {}

#: A tensor and the index-space key of each of its dims (None: no key).
Operand = Tuple[torch.Tensor, Sequence[Hashable]]


def flop_rule(*funcs) -> Callable[[FlopRule], FlopRule]:
    """Register a FLOPs rule for torch functions (missing ones skipped)."""
    return register_in(FLOP_RULES, *funcs)


def count_flops(ctx: OpContext) -> None:
    """Record the MACs of one op call, if it is an op that costs any."""
    try:
        rule = FLOP_RULES.get(ctx.func)
    except TypeError:  # unhashable callable
        return
    if rule is not None and ctx.graph.counting:
        rule(ctx)


def record(ctx: OpContext, total: float, operands: Sequence[Operand]) -> None:
    """Split ``total`` MACs over the labelled dims of the index space.

    Blocks of the operands' labels are taken largest first (a joint block
    over heads and head dims before a block over heads alone), each dim of
    the index space by one block at most.
    """
    candidates = []
    for tensor, keys in operands:
        labels: Labels = ctx.graph.get(tensor)
        for block in labels:
            covered = [keys[d] for d in block.dims]
            if any(k is None for k in covered):
                continue
            candidates.append((len(covered), block.ids.size, covered,
                               block.ids))
    candidates.sort(key=lambda c: (-c[0], -c[1]))
    taken, factors = set(), []
    for _, _, covered, ids in candidates:
        if taken.intersection(covered):
            continue
        taken.update(covered)
        factors.append(ids.ravel())
    ctx.graph.add_op_macs(ctx.via, float(total), factors)


def _numel(t) -> int:
    return int(t.numel()) if isinstance(t, torch.Tensor) else 0


def _same_keys(t: torch.Tensor) -> List[int]:
    return list(range(t.dim()))


def product_operands(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor,
                     transpose_b: bool = False) -> List[Operand]:
    """Index-space keys of ``a @ b``: batch dims (numbered from the right),
    ``'m'``, ``'k'`` (contracted) and ``'n'``."""

    def keys(t, last_two):
        nb = t.dim() - len(last_two)
        return [('batch', nb - i) for i in range(nb)] + list(last_two)

    a_keys = keys(a, ['m', 'k'] if a.dim() > 1 else ['k'])
    b_last = (['n', 'k'] if transpose_b else ['k', 'n'])
    b_keys = keys(b, b_last if b.dim() > 1 else ['k'])
    return [(a, a_keys), (b, b_keys)]


def _product(ctx: OpContext, a, b, transpose_b: bool = False) -> None:
    out = ctx.outputs[0]
    k = a.shape[-1]
    record(ctx,
           _numel(out) * k, product_operands(a, b, out, transpose_b))


@flop_rule(*MATMULS, *ADDMMS)
def matmul_flops(ctx: OpContext) -> None:
    _product(ctx, *matmul_operands(ctx))


@flop_rule(function('linear'))
def linear_flops(ctx: OpContext) -> None:
    """A computed weight, or rows that carry channels; else a parameter
    weight's MACs are in ``param_macs``."""
    x, weight = ctx.arg(0, 'input'), ctx.arg(1, 'weight')
    if ctx.graph.leaf_name(weight) is None:
        _product(ctx, x, weight, transpose_b=True)
    elif rows_carry_channels(ctx.graph, x):
        out = ctx.outputs[0]
        rows = list(range(x.dim() - 1))
        record(ctx, _numel(out) * x.shape[-1],
               [(x, rows + ['k']), (out, rows + ['n'])])


@flop_rule(function('conv1d'), function('conv2d'), function('conv3d'))
def conv_flops(ctx: OpContext) -> None:
    """A computed weight, or channels off the channel dim of the input
    (folded into the batch); else a parameter weight's MACs are in
    ``param_macs``."""
    x, weight = ctx.arg(0, 'input'), ctx.arg(1, 'weight')
    out = ctx.outputs[0]
    per_output = int(np.prod(weight.shape[1:]))
    groups = ctx.arg(6, 'groups', 1) or 1
    if ctx.graph.leaf_name(weight) is None and groups != 1:
        record(ctx, _numel(out) * per_output, [])
    elif ctx.graph.leaf_name(weight) is None or \
            carries_channels_off(ctx.graph, x, 1):
        # a computed weight's rows and columns are still channels
        # (weight standardisation): the count shrinks with them
        # input channels, output channels and the labelled other dims
        def keys(t, channel):
            return [channel if d == 1 else ('pos', d)
                    for d in range(t.dim())]

        record(ctx, _numel(out) * per_output,
               [(x, keys(x, 'k')), (out, keys(out, 'n'))])


@flop_rule(
    function('conv_transpose1d'), function('conv_transpose2d'),
    function('conv_transpose3d'))
def conv_transpose_flops(ctx: OpContext) -> None:
    """A grouped transposed conv (Grid R-CNN's ``deconv1/2``, one group per
    grid point) or one with a computed weight: its handler freezes it and
    records no ``param_macs``, yet it costs what mmengine counts for it,
    ``batch * prod(weight.shape) * prod(x.shape[2:])`` = ``numel(x) *
    weight[1] * k`` (each input element is spread over ``out / groups *
    k`` outputs). A plain one's MACs are in ``param_macs``."""
    x, weight = ctx.arg(0, 'input'), ctx.arg(1, 'weight')
    groups = ctx.arg(6, 'groups', 1) or 1
    if groups != 1 or ctx.graph.leaf_name(weight) is None:
        record(ctx, _numel(x) * int(np.prod(weight.shape[1:])), [])


@flop_rule(function('einsum'))
def einsum_flops(ctx: OpContext) -> None:
    """As mmengine: numpy's optimal contraction path, in multiply-adds."""
    equation = ctx.args[0].replace(' ', '')
    operands = [t for t in ctx.inputs]
    path = np.einsum_path(
        equation, *[np.empty(t.shape, dtype=np.int8) for t in operands],
        optimize='optimal')[1]
    parsed = parse_einsum(equation, [t.dim() for t in operands])
    # one contraction (two operands): its MACs are the product over every
    # index, and shrink with each labelled one
    keyed = [(t, list(term)) for t, term in zip(operands, parsed[0])
             ] if parsed and len(operands) == 2 else []
    for line in path.split('\n'):
        if 'optimized flop' in line.lower():
            record(ctx, float(np.floor(float(line.split(':')[-1]) / 2)),
                   keyed)
            return


@flop_rule(function('scaled_dot_product_attention'))
def sdpa_flops(ctx: OpContext) -> None:
    """``QK^T`` then ``attention x V``."""
    q, k, v = ctx.arg(0, 'query'), ctx.arg(1, 'key'), ctx.arg(2, 'value')
    out = ctx.outputs[0]
    batch = _numel(out) // (out.shape[-2] * out.shape[-1])
    length, source = q.shape[-2], k.shape[-2]

    def keys(t, last_two):
        nb = t.dim() - 2
        return [('batch', nb - i) for i in range(nb)] + last_two

    record(ctx, batch * length * source * q.shape[-1],
           [(q, keys(q, ['l', 'e'])), (k, keys(k, ['s', 'e']))])
    record(ctx, batch * length * source * v.shape[-1],
           [(v, keys(v, ['s', 'ev']))])


@flop_rule(function('batch_norm'))
def batch_norm_flops(ctx: OpContext) -> None:
    x, weight = ctx.arg(0, 'input'), ctx.arg(3, 'weight')
    training = ctx.arg(5, 'training', False)
    if training:
        per = 5 if weight is not None else 4
    else:
        per = 2 if weight is not None else 1
    out = ctx.outputs[0]
    record(ctx, _numel(x) * per, [(out, _same_keys(out))])


def _norm_flops(weight_index: int, weight_name: str) -> FlopRule:

    def rule(ctx: OpContext) -> None:
        x = ctx.arg(0, 'input')
        per = 5 if ctx.arg(weight_index, weight_name) is not None else 4
        out = ctx.outputs[0]
        record(ctx, _numel(x) * per, [(out, _same_keys(out))])

    return rule


flop_rule(function('layer_norm'))(_norm_flops(2, 'weight'))
flop_rule(function('group_norm'))(_norm_flops(2, 'weight'))
flop_rule(function('instance_norm'))(_norm_flops(3, 'weight'))

_RESIZE_PER_OUTPUT = {'nearest': 1, 'bilinear': 4}


@flop_rule(function('interpolate'), function('upsample'))
def interpolate_flops(ctx: OpContext) -> None:
    """mmengine counts 2d nearest (1 per output) and bilinear (4); ``area``
    is an adaptive average pooling (1 per input)."""
    x = ctx.arg(0, 'input')
    mode = ctx.arg(3, 'mode', 'nearest')
    out = ctx.outputs[0]
    if x.dim() != 4:
        return
    if mode == 'area':
        record(ctx, _numel(x), [(x, _same_keys(x))])
    elif mode in _RESIZE_PER_OUTPUT:
        record(ctx,
               _numel(out) * _RESIZE_PER_OUTPUT[mode],
               [(out, _same_keys(out))])


@flop_rule(function('adaptive_avg_pool2d'))
def adaptive_avg_pool_flops(ctx: OpContext) -> None:
    x = ctx.arg(0, 'input')
    record(ctx, _numel(x), [(x, _same_keys(x))])


@flop_rule(function('grid_sample'))
def grid_sample_flops(ctx: OpContext) -> None:
    out = ctx.outputs[0]
    record(ctx, _numel(out) * 4, [(out, _same_keys(out))])
