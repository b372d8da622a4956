"""Export mmcv's deformable convolutions (DCN, DCNv2) as standard ONNX ops.

mmcv 2.1's ``deform_conv2d`` and ``modulated_deform_conv2d`` export as the
custom ops ``mmcv::MMCVDeformConv2d`` and ``mmcv::MMCVModulatedDeformConv2d``,
which plain onnxruntime cannot load. :func:`deform_conv2d` computes what
mmcv's CPU kernel (``deformable_im2col`` / ``modulated_deformable_im2col``
then a GEMM) computes, with ops that export to ``GridSample`` (opset 16),
``Mul``, ``Reshape`` and ``Conv``.

For an output position ``p = (h * stride_h - pad_h, w * stride_w - pad_w)``,
a kernel tap ``k = (i, j)`` at ``p_k = (i * dilation_h, j * dilation_w)``,
an input channel ``c`` of deformable group ``d = c // (C / deform_groups)``
and output channel ``o`` of convolution group ``g``::

    y[o, p] = bias[o] + sum_{c in g, k} weight[o, c, k]
              * mask[d, k, p] * bilinear(x[c], p + p_k + offset[d, k, p])

where ``offset[d, k, p] = (offset[2 * (d * K + k)], offset[2 * (d * K + k)
+ 1])`` at ``p`` is ``(dy, dx)``, ``mask[d, k]`` is channel ``d * K + k``
of the mask (1 for DCN) and ``bilinear(x, (y, x))`` interpolates the four
neighbouring pixels, each taken as 0 outside the map (so 0 altogether when
``y <= -1``, ``y >= H``, ``x <= -1`` or ``x >= W``). That bilinear is
``F.grid_sample(mode='bilinear', padding_mode='zeros',
align_corners=False)`` at the normalised ``((2 x + 1) / W - 1,
(2 y + 1) / H - 1)``, which lands on pixel centre ``x`` exactly; points
far off the map are clamped to just off it (onnxruntime misreads them).

The output's size is mmcv's, from the input, kernel, stride, padding and
dilation; offsets and masks of another spatial size are read as mmcv's
kernel reads them, each sample's first values in memory order
(:func:`_per_sample`: DyHead's DCNv2 of the level above). Weight shape and
group count are constants of the graph, also where they come from a traced
shape (TOOD's ``deform_sampling``).

:func:`mmcv_deform_conv_exportable` puts :func:`deform_conv2d` and
:func:`modulated_deform_conv2d` in place of mmcv's functions for the time
of an export, in every imported module that holds them (mmcv's own modules,
``mmcv.ops``, mmdet's TOOD head, ...); it touches no file of mmcv.
"""
import contextlib
import sys
from typing import Iterator, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from mmcpd.comb.rebind import rebound

__all__ = [
    'deform_conv2d', 'modulated_deform_conv2d', 'mmcv_deform_conv_exportable',
    'MIN_OPSET'
]

#: The first opset with ``GridSample``.
MIN_OPSET = 16

_IntPair = Union[int, Tuple[int, int]]


def _pair(value: _IntPair) -> Tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def _static(value) -> int:
    """``value`` (an int, or a size the exporter traces) as a Python int.

    A convolution's weight shape and group count must be constants in the
    ONNX graph (its ``Conv`` has no kernel of unknown shape): TOOD's
    ``deform_sampling`` builds ``feat.new_ones(c, 1, 1, 1)`` and passes
    ``groups=c`` with ``c`` read from the traced feature's shape.
    """
    return int(value)


def _per_sample(name: str, tensor: Tensor, channels: int, out_h, out_w,
                batch) -> Tensor:
    """``tensor`` (offsets or masks) as mmcv's CPU kernel reads it:
    ``(batch, channels, out_h, out_w)``.

    mmcv reads each sample's ``tensor[b]`` from its first element in memory
    order, with the output's height and width, whatever the tensor's own
    spatial size (only DCN's ``deform_conv_shape_check`` checks it, DCNv2's
    kernel does not). DyHead passes offsets and masks of one level to the
    DCNv2 of the level above, whose output is half as high and wide: mmcv
    takes their first ``channels * out_h * out_w`` values. That is a reshape
    when each sample is contiguous (DyHead's channel slices are); any other
    layout is refused, as the export cannot read memory order.
    """
    if tuple(tensor.shape[-2:]) == (out_h, out_w):
        return tensor
    needed = channels * out_h * out_w
    if tensor.dim() != 4 or tensor[0].numel() < needed:
        raise ValueError(
            f"mmcv's deformable convolution reads {needed} {name} values per "
            f'sample ({channels} channels of its {out_h} x {out_w} output), '
            f'but got {name} of shape {tuple(tensor.shape)}')
    if not tensor[0].is_contiguous():
        raise ValueError(
            f"mmcv's deformable convolution reads the {name} of shape "
            f'{tuple(tensor.shape)} for an output of {out_h} x {out_w} in '
            'memory order, which the export reproduces only for a tensor '
            'whose samples are each contiguous')
    return tensor.reshape(batch, -1)[:, :needed].reshape(
        batch, channels, out_h, out_w)


def _deform(x: Tensor, offset: Tensor, mask: Optional[Tensor], weight: Tensor,
            bias: Optional[Tensor], stride: _IntPair, padding: _IntPair,
            dilation: _IntPair, groups: int, deform_groups: int) -> Tensor:
    """See the module's docstring; ``mask`` None is DCN's (all ones)."""
    x = x.type_as(offset)
    weight = weight.type_as(x)
    stride_h, stride_w = _pair(stride)
    pad_h, pad_w = _pair(padding)
    dil_h, dil_w = _pair(dilation)
    groups, deform_groups = _static(groups), _static(deform_groups)
    out_channels, in_per_group, kernel_h, kernel_w = map(
        _static, weight.shape)
    taps = kernel_h * kernel_w
    batch, channels, height, width = x.shape
    # the output's size as mmcv computes it, from the input
    out_h = (height + 2 * pad_h - (dil_h * (kernel_h - 1) + 1)) // stride_h + 1
    out_w = (width + 2 * pad_w - (dil_w * (kernel_w - 1) + 1)) // stride_w + 1
    offset = _per_sample('offset', offset, deform_groups * taps * 2, out_h,
                         out_w, batch)
    # p + p_k, (taps, out_h, out_w)
    rows = torch.arange(out_h, dtype=x.dtype, device=x.device) * stride_h
    cols = torch.arange(out_w, dtype=x.dtype, device=x.device) * stride_w
    tap_rows = torch.arange(kernel_h, dtype=x.dtype,
                            device=x.device).repeat_interleave(kernel_w)
    tap_cols = torch.arange(kernel_w, dtype=x.dtype,
                            device=x.device).repeat(kernel_h)
    base_y = (rows.view(1, -1, 1) - pad_h) + (tap_rows * dil_h).view(-1, 1, 1)
    base_x = (cols.view(1, 1, -1) - pad_w) + (tap_cols * dil_w).view(-1, 1, 1)
    # + offset: (batch, deform_groups, taps, out_h, out_w) each
    offset = offset.reshape(batch, deform_groups, taps, 2, out_h, out_w)
    y = base_y + offset[:, :, :, 0]
    x_pos = base_x + offset[:, :, :, 1]
    grid = torch.stack([(2 * x_pos + 1) / width - 1, (2 * y + 1) / height - 1],
                       dim=-1)
    # A point at or beyond -1 or W (H) has its four neighbours off the map
    # and samples 0; in normalised coordinates every point on the map is
    # within (-3, 3) (for W >= 1), every point at -3 or 3 off it. Clamped
    # there, as onnxruntime's GridSample reads far-off points as garbage
    # (offsets of 1e22 from a randomised DetectoRS's SAC); a NaN offset
    # samples 0, as mmcv's bounds check gives it.
    grid = torch.nan_to_num(grid, nan=-3.0).clamp(-3.0, 3.0)
    grid = grid.reshape(batch * deform_groups, taps * out_h, out_w, 2)
    sampled = F.grid_sample(x.reshape(batch * deform_groups,
                                      channels // deform_groups, height,
                                      width),
                            grid,
                            mode='bilinear',
                            padding_mode='zeros',
                            align_corners=False)
    # (batch, deform_groups, channels per group, taps, out_h, out_w)
    sampled = sampled.reshape(batch, deform_groups, channels // deform_groups,
                              taps, out_h, out_w)
    if mask is not None:
        mask = _per_sample('mask', mask.type_as(x), deform_groups * taps,
                           out_h, out_w, batch)
        sampled = sampled * mask.reshape(batch, deform_groups, 1, taps, out_h,
                                         out_w)
    # the columns in weight's (channel, tap) order, convolved 1 x 1
    columns = sampled.reshape(batch, channels * taps, out_h, out_w)
    return F.conv2d(
        columns,
        weight.reshape(out_channels, in_per_group * taps, 1, 1),
        bias.type_as(x) if bias is not None and bias.numel() else None,
        groups=groups)


def deform_conv2d(input: Tensor,
                  offset: Tensor,
                  weight: Tensor,
                  stride: _IntPair = 1,
                  padding: _IntPair = 0,
                  dilation: _IntPair = 1,
                  groups: int = 1,
                  deform_groups: int = 1,
                  bias: bool = False,
                  im2col_step: int = 32) -> Tensor:
    """mmcv's ``deform_conv2d`` (DCN) in plain PyTorch ops; same arguments
    (``im2col_step`` only splits mmcv's work, ``bias`` must be False)."""
    if bias:
        raise ValueError("mmcv's deform_conv2d supports only bias=False")
    return _deform(input, offset, None, weight, None, stride, padding,
                   dilation, groups, deform_groups)


def modulated_deform_conv2d(input: Tensor,
                            offset: Tensor,
                            mask: Tensor,
                            weight: Tensor,
                            bias: Optional[Tensor] = None,
                            stride: _IntPair = 1,
                            padding: _IntPair = 0,
                            dilation: _IntPair = 1,
                            groups: int = 1,
                            deform_groups: int = 1) -> Tensor:
    """mmcv's ``modulated_deform_conv2d`` (DCNv2) in plain PyTorch ops; same
    arguments."""
    return _deform(input, offset, mask, weight, bias, stride, padding,
                   dilation, groups, deform_groups)


def _replaced():
    """(mmcv's function, its replacement) for each imported mmcv module."""
    ours = {
        'deform_conv2d': deform_conv2d,
        'modulated_deform_conv2d': modulated_deform_conv2d
    }
    modules = {
        'deform_conv2d': 'mmcv.ops.deform_conv',
        'modulated_deform_conv2d': 'mmcv.ops.modulated_deform_conv'
    }
    for name, module_name in modules.items():
        original = getattr(sys.modules.get(module_name), name, None)
        if original is not None:
            yield original, ours[name]


@contextlib.contextmanager
def mmcv_deform_conv_exportable(opset: int) -> Iterator[None]:
    """Within the block, mmcv's ``deform_conv2d`` and
    ``modulated_deform_conv2d`` are :func:`deform_conv2d` and
    :func:`modulated_deform_conv2d` in every imported module that holds
    them (by identity: ``DeformConv2d``'s forward, ``mmcv.ops``, modules
    that imported them by name); mmcv's are back after.

    Does nothing when ``mmcv.ops`` is not imported (then no model uses its
    deformable convolutions).

    Args:
        opset (int): The opset being exported; a model with a deformable
            convolution fails to export below :data:`MIN_OPSET` (no
            ``GridSample``).
    """
    pairs = list(_replaced())
    if not pairs:
        yield
        return
    with rebound([(original, _checked(ours, opset))
                  for original, ours in pairs]):
        yield


def _checked(function, opset: int):
    """``function``, raising at a call below :data:`MIN_OPSET`."""
    if opset >= MIN_OPSET:
        return function

    def refuse(*args, **kwargs):
        raise ValueError(
            f"mmcv's deformable convolution exports with ONNX GridSample, "
            f'which needs opset >= {MIN_OPSET}, but got opset {opset}')

    return refuse
