"""Elementwise ops: channels pass through, broadcast inputs are tied."""
import torch
import torch.nn.functional as F

from mmcpd.comb.couple import couple, tensor_items
from mmcpd.comb.handlers.base import OpContext, function, method, register

_BINARY = [
    'add', 'sub', 'mul', 'div', 'true_divide', 'floor_divide', 'remainder',
    'fmod', 'pow', 'maximum', 'minimum', 'atan2', 'where', 'masked_fill',
    'lerp', 'addcmul', 'addcdiv', 'eq', 'ne', 'lt', 'le', 'gt', 'ge',
    'logical_and', 'logical_or', 'logical_xor', 'bitwise_and', 'bitwise_or',
    'clamp', 'clip', 'clamp_min', 'clamp_max', 'hypot', 'copysign', 'rsub',
    'copy_', 'mul_', 'add_', 'sub_', 'div_', 'masked_fill_', 'clamp_', 'lerp_',
    'addcmul_', 'addcdiv_', 'pow_', 'sigmoid_', 'tanh_', 'relu_', 'exp_',
    'neg_', 'abs_', 'sqrt_', 'fill_', 'zero_', 'clamp_min_', 'clamp_max_',
    'mish', 'hardswish_', 'where_'
]
_DUNDER = [
    '__add__', '__radd__', '__iadd__', '__sub__', '__rsub__', '__isub__',
    '__mul__', '__rmul__', '__imul__', '__truediv__', '__rtruediv__',
    '__itruediv__', '__div__', '__rdiv__', '__idiv__', '__floordiv__',
    '__rfloordiv__', '__pow__', '__rpow__', '__ipow__', '__neg__', '__abs__',
    '__eq__', '__ne__', '__lt__', '__le__', '__gt__', '__ge__', '__and__',
    '__or__', '__xor__', '__invert__', '__mod__', '__rmod__', '__pos__'
]
_UNARY = [
    'relu', 'relu6', 'gelu', 'silu', 'sigmoid', 'tanh', 'hardswish',
    'hardsigmoid', 'hardtanh', 'leaky_relu', 'elu', 'selu', 'celu',
    'softplus', 'softsign', 'mish', 'logsigmoid', 'tanhshrink', 'hardshrink',
    'softshrink', 'threshold', 'rrelu', 'glu_', 'abs', 'neg', 'negative',
    'exp', 'expm1', 'log', 'log1p', 'log2', 'log10', 'sqrt', 'rsqrt',
    'square', 'reciprocal', 'sign', 'sgn', 'sin', 'cos', 'tan', 'asin',
    'acos', 'atan', 'sinh', 'cosh', 'erf', 'erfc', 'erfinv', 'floor', 'ceil',
    'round', 'trunc', 'frac', 'nan_to_num', 'logical_not', 'bitwise_not',
    'isnan', 'isinf', 'isfinite', 'sigmoid', 'dropout', 'dropout1d',
    'dropout2d', 'dropout3d', 'alpha_dropout', 'feature_alpha_dropout',
    'contiguous', 'clone', 'detach', 'detach_', 'float', 'double', 'half',
    'bfloat16', 'int', 'long', 'bool', 'cpu', 'cuda', 'requires_grad_',
    'hardswish',
    'hardsigmoid', 'relu6', 'silu_', 'gelu_', 'elu_', 'leaky_relu_',
    'hardtanh_', 'relu6_', 'selu_', 'celu_', 'rrelu_', 'threshold_',
    'pin_memory'
]
# ops that copy the first input's layout; other tensor args carry no data
_FIRST_ONLY = ['to', 'type', 'type_as', 'new_tensor']
_LIKE = [
    'zeros_like', 'ones_like', 'empty_like', 'full_like', 'rand_like',
    'randn_like', 'randint_like'
]


def _funcs(names):
    found = []
    for name in names:
        found += [method(name)] + function(name)
        if hasattr(F, name):
            found.append(getattr(F, name))
        if hasattr(torch.special, name):
            found.append(getattr(torch.special, name))
    return [f for f in found if f is not None]


@register(*_funcs(_BINARY + _UNARY), *[method(n) for n in _DUNDER])
def pointwise(ctx: OpContext) -> None:
    """Every input broadcast against the output; positions tied."""
    outs = ctx.outputs
    if not outs:
        return
    out = outs[0]
    labels = couple(ctx.graph, tensor_items(ctx.graph, ctx.inputs, out.shape),
                    ctx.via)
    ctx.graph.set(out, labels)


@register(*_funcs(_FIRST_ONLY + _LIKE))
def pass_first(ctx: OpContext) -> None:
    """The output keeps the first input's channels (dtype/device moves,
    ``*_like`` factories whose size follows the input)."""
    outs, ins = ctx.outputs, ctx.inputs
    if outs and ins and tuple(outs[0].shape) == tuple(ins[0].shape):
        ctx.graph.set(outs[0], ctx.graph.get(ins[0]))


@register(
    method('new_zeros'), method('new_ones'), method('new_full'),
    method('new_empty'), method('new_tensor'))
def factory(ctx: OpContext) -> None:
    """New tensors whose sizes are given: unlabelled, nothing to tie. A
    zero-filled one is remembered with its sizes: channels scattered into
    it can pass (``handlers.concat.setitem``)."""
    if ctx.name == 'new_zeros' and ctx.outputs:
        sizes = ctx.args[1:] or (ctx.kwargs.get('size'), )
        if len(sizes) == 1 and isinstance(sizes[0], (list, tuple)):
            sizes = tuple(sizes[0])
        ctx.graph.zero_buffers[ctx.outputs[0]] = tuple(sizes)


@register(function('prelu'))
def prelu(ctx: OpContext) -> None:
    """``prelu(x, weight)``: the weight has one slope per channel (dim 1)."""
    x, weight = ctx.arg(0, 'input'), ctx.arg(1, 'weight')
    out = ctx.outputs[0]
    items = tensor_items(ctx.graph, [x], out.shape)
    if weight.numel() > 1:
        items.append((ctx.graph.get(weight), tuple(weight.shape), [1]))
    ctx.graph.set(out, couple(ctx.graph, items, ctx.via))
