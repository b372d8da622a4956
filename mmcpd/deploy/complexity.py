"""Parameters and FLOPs of a torch model or of an ONNX file.

FLOPs follow mmengine's (and fvcore's) convention: one multiply-add counts
as one FLOP, so a ``Cin -> Cout`` k x k convolution producing ``H x W``
outputs costs ``H * W * Cout * Cin / groups * k * k``.

* :func:`model_complexity` runs :func:`mmengine.analysis.
  get_model_complexity_info` on the model in tensor mode (all ops mmengine
  has handlers for: convolutions, matmuls, norms, upsampling, ...).
* :func:`onnx_complexity` counts, from the graph after shape inference,
  the multiply-adds of Conv, ConvTranspose, Gemm and MatMul only (the ops
  that dominate vision models); use it when only ``.onnx`` files are given.
  Both counters give the same *ratio* between a model and its pruned copy to
  within the share of the other ops.
"""
import logging
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from mmcpd.comb.deform_conv import FLOP_JIT_OPS, deform_conv_flop_jit
from mmcpd.deploy.adapter import TensorModeAdapter
from mmcpd.utils.module import Forward

__all__ = [
    'model_complexity', 'onnx_complexity', 'onnx_node_macs', 'sdpa_flop_jit',
    'conv_mode_flop_jit', 'baddbmm_flop_jit'
]

#: The ONNX ops whose multiply-adds are counted.
PRODUCT_OPS = ('Conv', 'ConvTranspose', 'Gemm', 'MatMul')


def sdpa_flop_jit(inputs, outputs) -> int:
    """mmengine handle for ``aten::scaled_dot_product_attention``, which
    mmengine's counter leaves out: ``QK^T`` and ``attention x V``, one FLOP
    per multiply-add as for ``aten::matmul``."""
    from mmengine.analysis.jit_handles import get_shape
    q, k, v = (get_shape(t) for t in inputs[:3])
    batch = int(np.prod(q[:-2]))
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def conv_mode_flop_jit(inputs, outputs) -> int:
    """mmengine handle for ``aten::_convolution_mode``: a convolution with
    ``padding='same'`` or ``'valid'`` (ConvMixer's), which mmengine's
    counter leaves out; counted as its ``aten::_convolution``."""
    from mmengine.analysis.jit_handles import conv_flop_count, get_shape
    return conv_flop_count(
        get_shape(inputs[0]), get_shape(inputs[1]), get_shape(outputs[0]),
        transposed=False)


def baddbmm_flop_jit(inputs, outputs) -> int:
    """mmengine handle for ``aten::baddbmm`` (``input + batch1 @ batch2``),
    which mmengine's counter leaves out: the ``QK^T`` of
    ``nn.MultiheadAttention`` given an ``attn_mask`` (DDQ DETR's decoder);
    counted as the ``aten::bmm`` of ``batch1`` and ``batch2``."""
    from mmengine.analysis.jit_handles import bmm_flop_jit
    return bmm_flop_jit(list(inputs)[1:3], outputs)


def model_complexity(model: nn.Module,
                     inputs: torch.Tensor,
                     forward: Forward = None) -> dict:
    """Parameters and FLOPs of ``model`` in tensor mode on ``inputs``.

    FLOPs are :class:`mmengine.analysis.FlopAnalyzer`'s (its handles for
    convolutions, matmuls, norms, upsampling, ...), plus ops it has no
    handle for: :func:`sdpa_flop_jit` (fused attention) and
    :func:`conv_mode_flop_jit` (convolutions with ``padding='same'``),
    :func:`baddbmm_flop_jit` (attention scores under a mask),
    and mmcv's deformable convolutions, counted as convolutions
    (:func:`mmcpd.comb.deform_conv.deform_conv_flop_jit`).

    Args:
        model (nn.Module): An MMPretrain/MMSeg/MMDetection model or plain
            module.
        inputs (torch.Tensor): An input batch.
        forward (str | callable, optional): ``forward(model, inputs)`` or
            its import path, as :class:`TensorModeAdapter` takes it.
            Defaults to None: tensor mode.

    Returns:
        dict: ``params`` (int), ``flops`` (int, multiply-adds of the whole
        batch) and ``flops_counter`` (``'mmengine.analysis'``).
    """
    from mmengine.analysis import FlopAnalyzer
    from mmengine.logging import MMLogger

    adapter = model if isinstance(model, TensorModeAdapter) else \
        TensorModeAdapter(model, forward=forward)
    # mmengine warns once per op kind it has no handler for (e.g. ReLU).
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with torch.no_grad():
            analyzer = FlopAnalyzer(adapter, (inputs, ))
            analyzer.set_op_handle(
                'aten::scaled_dot_product_attention', sdpa_flop_jit)
            analyzer.set_op_handle('aten::_convolution_mode',
                                   conv_mode_flop_jit)
            analyzer.set_op_handle('aten::baddbmm', baddbmm_flop_jit)
            for name in FLOP_JIT_OPS:  # mmcv's deformable convolutions
                analyzer.set_op_handle(name, deform_conv_flop_jit)
            analyzer.unsupported_ops_warnings(False)
            analyzer.uncalled_modules_warnings(False)
            flops = analyzer.total()
    finally:
        logger.setLevel(level)
    params = sum(p.numel() for p in adapter.parameters())
    return dict(
        params=int(params),
        flops=int(flops),
        flops_counter='mmengine.analysis')


def _shapes(graph) -> Dict[str, Sequence[int]]:
    shapes = {}
    for value in list(graph.value_info) + list(graph.input) + list(
            graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [
            d.dim_value if d.HasField('dim_value') else None for d in dims
        ]
    for init in graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def _attr(node, name: str, default):
    for attr in node.attribute:
        if attr.name == name:
            from onnx import helper
            return helper.get_attribute_value(attr)
    return default


def _known(shape) -> bool:
    return shape is not None and all(d is not None for d in shape)


def _node_macs(node, shapes) -> int:
    ins = [shapes.get(n) for n in node.input]
    out = shapes.get(node.output[0])
    if not _known(out) or not ins or not _known(ins[0]):
        return 0
    if node.op_type in ('Conv', 'ConvTranspose'):
        weight = ins[1]
        if not _known(weight):
            return 0
        kernel = int(np.prod(weight[2:]))
        if node.op_type == 'Conv':  # weight: Cout, Cin/g, k...
            return int(np.prod(out)) * weight[1] * kernel
        # ConvTranspose weight: Cin, Cout/g, k...; every input element is
        # spread over Cout/g * k outputs.
        return int(np.prod(ins[0])) * weight[1] * kernel
    if node.op_type == 'Gemm':
        k = ins[0][0] if _attr(node, 'transA', 0) else ins[0][-1]
        return int(np.prod(out)) * k
    if node.op_type == 'MatMul':
        return int(np.prod(out)) * ins[0][-1]
    return 0


def _inferred(path: str, shape: Optional[Sequence[int]]):
    """The file's model after shape inference, its input fixed to
    ``shape`` when given."""
    import onnx

    proto = onnx.load(str(path))
    graph = proto.graph
    init_names = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in init_names]
    if shape is not None:
        dims = inputs[0].type.tensor_type.shape.dim
        if len(dims) != len(shape):
            raise ValueError(f'`shape` should have {len(dims)} dims for '
                             f'`{path}`, but got {list(shape)}')
        for dim, size in zip(dims, shape):
            dim.Clear()
            dim.dim_value = int(size)
    return onnx.shape_inference.infer_shapes(proto, data_prop=True)


def onnx_node_macs(path: str,
                   shape: Optional[Sequence[int]] = None
                   ) -> Tuple[object, Dict[str, int]]:
    """The graph of an ONNX file as written, and the multiply-adds of its
    Conv, ConvTranspose, Gemm and MatMul nodes by node name.

    Args:
        path (str): The ``.onnx`` file.
        shape (Sequence[int], optional): Input shape, needed if the file's
            input has dynamic axes. Defaults to the file's.

    Returns:
        tuple: The ``onnx.GraphProto`` after shape inference, and
        ``{node name: MACs}`` of its product nodes.
    """
    graph = _inferred(path, shape).graph
    shapes = _shapes(graph)
    macs = {
        node.name: _node_macs(node, shapes)
        for node in graph.node if node.op_type in PRODUCT_OPS
    }
    return graph, macs


def onnx_complexity(path: str, shape: Optional[Sequence[int]] = None) -> dict:
    """Parameters and multiply-adds of an ONNX file.

    Args:
        path (str): The ``.onnx`` file.
        shape (Sequence[int], optional): Input shape, needed if the file's
            input has dynamic axes. Defaults to the file's.

    Returns:
        dict: ``params`` (elements of all float initializers), ``flops``
        (multiply-adds of Conv, ConvTranspose, Gemm and MatMul) and
        ``flops_counter`` (``'onnx (conv/gemm/matmul)'``).
    """
    import onnx

    proto = _inferred(path, shape)
    shapes = _shapes(proto.graph)
    float_types = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16,
                   onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16)
    params = sum(
        int(np.prod(i.dims)) for i in proto.graph.initializer
        if i.data_type in float_types)
    flops = sum(_node_macs(node, shapes) for node in proto.graph.node)
    return dict(
        params=int(params),
        flops=int(flops),
        flops_counter='onnx (conv/gemm/matmul)')
