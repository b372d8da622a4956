"""mmcv's deformable convolutions (DCN, DCNv2), traced as convolutions.

``deform_conv2d`` and ``modulated_deform_conv2d`` are autograd Functions
that run mmcv's C++ kernels: the tracer sees only the size reads and the
``new_empty`` buffers around them, so :class:`~mmcpd.comb.opaque.Provenance`
froze every channel they touch (the ResNet stages of DCN backbones, DyHead,
Cascade RPN's adaptive convs). Yet channel-wise they are convolutions:
output channel ``o`` is weight row ``o``, input channel ``c`` weight column
``c`` (within its conv group), whatever positions the offsets sample.

While the model is traced (:func:`deform_conv_stand_ins`, entered by
:func:`~mmcpd.comb.stand_ins.stand_ins`), both functions run as one op each
(:func:`deform_conv`, :func:`modulated_deform_conv`) whose handler
(:func:`deformable_conv`) is the convolution handler's on ``(input,
weight, bias, stride, padding, dilation, groups)``; the offsets and the
mask are laid out by kernel size and deform groups, so their channels are
frozen (the convs that compute them keep their output rows and prune their
inputs with the feature map). With ``deform_groups > 1`` input channel
``c`` reads the offsets of deform group ``c // (C / deform_groups)``: each
deform group keeps as many channels as the others (a balanced tie, as a
grouped conv's rows), so that the cut map still splits into the same
groups. Labelled positions are sampled at computed locations: frozen.

mmcv's functions are replaced by identity in every imported module that
holds them (``DeformConv2d.forward``'s module, ``mmcv.ops``, mmdet's TOOD
head that imported ``deform_conv2d`` by name) and in the Functions'
``apply``; nothing here imports mmcv.

FLOPs: those of the convolution (``numel(out) * C_in / groups * kh *
kw``), counted as :mod:`~mmcpd.comb.flops` counts ``F.conv2d`` (a
parameter weight's per weight element, a computed weight's as an op).
mmengine's counter has no handle for these Functions (it sees a
``prim::PythonOp``);
:func:`mmcpd.deploy.model_complexity` adds one with the same formula
(:func:`deform_conv_flop_jit`).
"""
import contextlib
import sys
from typing import Dict, Iterator, List, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import handle_torch_function

from mmcpd.comb.flops import conv_flops, flop_rule
from mmcpd.comb.handlers.base import OpContext, register
from mmcpd.comb.handlers.layers import conv
from mmcpd.comb.labels import dim_ids
from mmcpd.comb.rebind import rebound

#: mmcv module -> (its function's name, its autograd Function's name).
_MMCV = {
    'mmcv.ops.deform_conv': ('deform_conv2d', 'DeformConv2dFunction'),
    'mmcv.ops.modulated_deform_conv':
    ('modulated_deform_conv2d', 'ModulatedDeformConv2dFunction'),
}


def _tensors(args) -> tuple:
    return tuple(a for a in args if isinstance(a, torch.Tensor))


def deform_conv(original, *args):
    """mmcv's ``deform_conv2d(input, offset, weight, stride, padding,
    dilation, groups, deform_groups, bias=False, im2col_step=32)``, as
    one op."""
    return original(*args)


def modulated_deform_conv(original, *args):
    """mmcv's ``modulated_deform_conv2d(input, offset, mask, weight, bias,
    stride, padding, dilation, groups, deform_groups)``, as one op."""
    return original(*args)


#: op -> names of mmcv's arguments, in order, with their defaults.
_SIGNATURES: Dict[object, List[Tuple[str, object]]] = {
    deform_conv: [('input', None), ('offset', None), ('weight', None),
                  ('stride', 1), ('padding', 0), ('dilation', 1),
                  ('groups', 1), ('deform_groups', 1), ('bias', False),
                  ('im2col_step', 32)],
    modulated_deform_conv: [('input', None), ('offset', None), ('mask', None),
                            ('weight', None), ('bias', None), ('stride', 1),
                            ('padding', 0), ('dilation', 1), ('groups', 1),
                            ('deform_groups', 1)],
}
_OPS = {'deform_conv2d': deform_conv,
        'modulated_deform_conv2d': modulated_deform_conv}


def bound_args(ctx: OpContext) -> dict:
    """The call's arguments by mmcv's names (defaults filled in)."""
    args = dict(_SIGNATURES[ctx.func])
    for (name, _), value in zip(_SIGNATURES[ctx.func], ctx.args[1:]):
        args[name] = value
    args.update(ctx.kwargs)
    return args


def _as_op(op, original):
    """A callable that hands ``op(original, *args)`` to the tracer."""

    def call(*args, **kwargs):
        if kwargs:  # Function.apply takes positions only: bind them
            names = [n for n, _ in _SIGNATURES[op]]
            given = dict(zip(names, args), **kwargs)
            args = tuple(given.get(n, d) for n, d in _SIGNATURES[op])
        if torch._C._is_torch_function_enabled() and \
                torch._C._is_torch_function_mode_enabled():
            return handle_torch_function(op, _tensors(args), original, *args)
        return original(*args)  # inside another op: unseen anyway

    call.__name__ = op.__name__
    return call


@contextlib.contextmanager
def deform_conv_stand_ins() -> Iterator[None]:
    """Inside, mmcv's ``deform_conv2d`` / ``modulated_deform_conv2d`` (if
    imported) run as :func:`deform_conv` / :func:`modulated_deform_conv`
    ops, wherever they are called from; restored on exit."""
    pairs = []  # (mmcv's function, the stand-in)
    attributes = []  # (Function class, 'apply', the stand-in)
    for module_name, (name, function) in _MMCV.items():
        module = sys.modules.get(module_name)
        original = getattr(module, name, None)
        if original is None:
            continue
        op = _OPS[name]
        pairs.append((original, _as_op(op, original)))
        cls = getattr(module, function, None)
        if cls is not None and 'apply' not in vars(cls):
            # ``Function.apply(...)`` called directly; the class attribute
            # is inherited (``torch.autograd.Function.apply``)
            attributes.append((cls, 'apply', _as_op(op, original)))
    with rebound(pairs, attributes):
        yield


@register(deform_conv, modulated_deform_conv)
def deformable_conv(ctx: OpContext) -> None:
    """Input, weight, bias and output as a convolution's; offsets and mask
    frozen; with ``deform_groups > 1`` the deform groups keep equal
    widths."""
    graph = ctx.graph
    a = bound_args(ctx)
    x = a['input']
    reason = ('deformable conv offsets (laid out by kernel and deform '
              f'groups) in {ctx.via}')
    for name in ('offset', 'mask'):
        for block in graph.get(a.get(name)):
            graph.freeze(block.ids, reason)
    for block in graph.get(x):
        if block.dims != (1, ):
            graph.freeze(block.ids, 'labelled positions sampled by a '
                         f'deformable conv in {ctx.via}')
    deform_groups = int(a['deform_groups'] or 1)
    x_ids = dim_ids(graph, graph.get(x), 1)
    if deform_groups > 1 and x_ids is not None:
        if len(x_ids) % deform_groups:
            graph.freeze(x_ids, f'{len(x_ids)} channels in '
                         f'{deform_groups} deform groups in {ctx.via}')
        else:
            graph.balanced.append(x_ids.reshape(deform_groups, -1))
    conv(as_conv(ctx, a))
    _unread_bias(ctx, a)


def _unread_bias(ctx: OpContext, a: dict) -> None:
    """The calling module's own ``bias`` that the call does not read
    follows the output channels: mmcv's ``SAConv2d`` (DetectoRS) is an
    ``nn.Conv2d`` whose forward convolves with a zero bias, yet its
    ``bias`` parameter is as wide as its rows, which the spec checks."""
    bias = getattr(ctx.module, 'bias', None)
    out = ctx.outputs[0]
    if not isinstance(bias, torch.nn.Parameter) or bias is a['bias'] or \
            bias.dim() != 1 or len(bias) != out.shape[1]:
        return
    out_ids = dim_ids(ctx.graph, ctx.graph.get(out), 1)
    ids = ctx.graph.leaf_dim(bias, 0)
    if out_ids is not None and ids is not None:
        ctx.graph.union(out_ids, ids, ctx.via)


def as_conv(ctx: OpContext, a: dict) -> OpContext:
    """The call, as ``F.conv2d(input, weight, bias, stride, padding,
    dilation, groups)`` in the same module."""
    bias = a['bias'] if isinstance(a['bias'], torch.Tensor) else None
    return OpContext(ctx.graph, F.conv2d,
                     (a['input'], a['weight'], bias, a['stride'],
                      a['padding'], a['dilation'], a['groups']), {},
                     ctx.out, ctx.scope, ctx.module, ctx.name,
                     ctx.call_index)


def _macs(out_shape, weight_shape) -> int:
    """``numel(out) * C_in / groups * kh * kw``: a convolution's."""
    return int(np.prod(out_shape)) * int(np.prod(weight_shape[1:]))


@flop_rule(deform_conv, modulated_deform_conv)
def deformable_conv_flops(ctx: OpContext) -> None:
    """A convolution's (:func:`~mmcpd.comb.flops.conv_flops`): a parameter
    weight's multiply-adds are in ``param_macs`` (recorded by the
    convolution handler), a computed weight's (DetectoRS' SAC, TOOD's
    sampling) are recorded here."""
    conv_flops(as_conv(ctx, bound_args(ctx)))


#: mmengine's names of the Functions' nodes (``prim::PythonOp.<class>``).
FLOP_JIT_OPS = ('prim::PythonOp.DeformConv2dFunction',
                'prim::PythonOp.ModulatedDeformConv2dFunction')


def deform_conv_flop_jit(inputs, outputs) -> int:
    """mmengine handle for mmcv's deformable convolutions (keys of
    :data:`FLOP_JIT_OPS`), which its counter leaves out: as a
    convolution, ``numel(out) * C_in / groups * kh * kw``."""
    from mmengine.analysis.jit_handles import get_shape
    shapes = [get_shape(v) for v in inputs]
    weights = [s for s in shapes if s is not None and len(s) == 4]
    # input, offset, (mask,) weight: the weight is the last 4-d tensor
    return _macs(get_shape(outputs[0]), weights[-1])
