"""Functions that the tracer sees as one op, with a rule of their own.

mmcv's multi-scale deformable attention (Deformable DETR, DINO) runs a C++
op on CUDA (``MultiScaleDeformableAttnFunction``), which the tracer cannot
see: a comb on the GPU would freeze everything it touches. On the CPU mmcv
runs ``multi_scale_deformable_attn_pytorch`` instead, which the tracer
sees, but which reads both the head count and the head dim off the value's
shape: each read ties the other axis, so all heads become one unit.

Yet what the op computes is known: output channel ``(h, d)`` is value
channel ``(h, d)``, bilinearly sampled at head ``h``'s sampling locations
and summed with head ``h``'s attention weights. While the model is
traced (:func:`stand_ins`), both functions are replaced by one op that
runs the original unseen and hands the call to the tracer as a whole:
:func:`deformable_attention` passes the value's channels to the output
and ties each head's locations and weights to that head's value
channels, so a unit is a whole head (removing it zeroes its value, and
the head's output with it, in the masked model as in the pruned one).

Nothing here imports mmcv: its modules are patched only where the model
already imported them.
"""
import contextlib
import sys
from typing import Iterator

import numpy as np
import torch
from torch.overrides import handle_torch_function

from mmcpd.comb.cuda_only_ops import cuda_only_ops
from mmcpd.comb.deform_conv import deform_conv_stand_ins
from mmcpd.comb.flops import _same_keys, flop_rule, record
from mmcpd.comb.handlers.base import OpContext, register
from mmcpd.comb.labels import Block

_MODULE = 'mmcv.ops.multi_scale_deform_attn'


def _tensors(args) -> tuple:
    return tuple(a for a in args if isinstance(a, torch.Tensor))


def msda_pytorch(original, value, spatial_shapes, locations, weights):
    """``multi_scale_deformable_attn_pytorch``, as one op."""
    return original(value, spatial_shapes, locations, weights)


def msda_function(original, value, spatial_shapes, level_start_index,
                  locations, weights, im2col_step):
    """``MultiScaleDeformableAttnFunction.apply``, as one op."""
    return original(value, spatial_shapes, level_start_index, locations,
                    weights, im2col_step)


#: op -> positions of (value, sampling locations, attention weights) among
#: its arguments after ``original``.
_ARGS = {msda_pytorch: (0, 2, 3), msda_function: (0, 3, 4)}


def _as_op(op, original):
    """A callable that hands ``op(original, *args)`` to the tracer."""

    def call(*args):
        if torch._C._is_torch_function_enabled() and \
                torch._C._is_torch_function_mode_enabled():
            return handle_torch_function(op, _tensors(args), original, *args)
        return original(*args)  # inside another op: unseen anyway

    return call


@contextlib.contextmanager
def stand_ins() -> Iterator[None]:
    """Inside, mmcv's deformable attention (if imported) runs as
    :func:`msda_pytorch` / :func:`msda_function` ops, and its deformable
    convolutions as :mod:`~mmcpd.comb.deform_conv`'s; restored on exit."""
    with deform_conv_stand_ins(), _msda_stand_ins(), cuda_only_ops():
        yield


@contextlib.contextmanager
def _msda_stand_ins() -> Iterator[None]:
    module = sys.modules.get(_MODULE)
    if module is None:
        yield
        return
    saved = []
    pytorch = getattr(module, 'multi_scale_deformable_attn_pytorch', None)
    if pytorch is not None:
        saved.append((module, 'multi_scale_deformable_attn_pytorch',
                      pytorch))
        module.multi_scale_deformable_attn_pytorch = _as_op(
            msda_pytorch, pytorch)
    function = getattr(module, 'MultiScaleDeformableAttnFunction', None)
    if function is not None:
        apply = function.__dict__.get('apply')
        saved.append((function, 'apply', apply))
        function.apply = _as_op(msda_function, function.apply)
    try:
        yield
    finally:
        for owner, name, value in saved:
            if value is None:
                delattr(owner, name)
            else:
                setattr(owner, name, value)


@register(msda_pytorch, msda_function)
def deformable_attention(ctx: OpContext) -> None:
    """Value ``(bs, num_value, heads, head_dim)`` -> output ``(bs,
    num_queries, heads * head_dim)``: channel ``(h, d)`` passes; head
    ``h``'s locations ``(bs, nq, heads, levels, points, 2)`` and weights
    ``(bs, nq, heads, levels, points)`` go with all of head ``h``'s value
    channels (a unit is a whole head). Anything else freezes."""
    graph = ctx.graph
    at_value, at_loc, at_weight = _ARGS[ctx.func]
    args = ctx.args[1:]
    value, out = args[at_value], ctx.outputs[0]
    heads, dim = value.shape[2], value.shape[3]
    grid = _head_ids(ctx, value, heads, dim)
    if grid is None or out.shape[-1] != heads * dim:
        reason = f'{ctx.via}: its value is no (heads, head dim) block'
        ctx.freeze_inputs(reason)
        ctx.frozen_output(reason)
        graph.warnings.append(reason)
        return
    for t in (args[at_loc], args[at_weight]):
        for block in graph.get(t):
            if 2 not in block.dims:
                graph.freeze(block.ids, f'{ctx.via} reads them across heads')
                continue
            per_head = np.moveaxis(block.ids, block.dims.index(2), 0)
            per_head = per_head.reshape(heads, -1)
            graph.union(per_head, grid[:, :1], ctx.via)
    graph.set(out, [Block((out.dim() - 1, ), grid.reshape(-1))])


def _head_ids(ctx: OpContext, value, heads: int, dim: int):
    """The value's ids as ``(heads, head_dim)``, each head's tied to one
    another; its other labelled dims frozen. None if unlabelled."""
    graph = ctx.graph
    grid = None
    for block in graph.get(value):
        if set(block.dims) == {2, 3}:
            grid = block.ids if block.dims == (2, 3) else block.ids.T
        else:
            graph.freeze(block.ids, f'{ctx.via} mixes them')
    if grid is None:
        return None
    graph.union(grid, grid[:, :1], ctx.via)
    return grid


@flop_rule(msda_pytorch, msda_function)
def deformable_attention_flops(ctx: OpContext) -> None:
    """What ``grid_sample`` costs in the PyTorch version, ``numel(out) *
    4`` per level and point: ``4 * levels * points`` per output
    element."""
    _, at_loc, _ = _ARGS[ctx.func]
    locations, out = ctx.args[1:][at_loc], ctx.outputs[0]
    levels, points = locations.shape[3], locations.shape[4]
    record(ctx, out.numel() * 4 * levels * points,
           [(out, _same_keys(out))])
