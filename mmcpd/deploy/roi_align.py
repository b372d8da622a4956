"""Export mmcv's ``RoIAlign`` as a valid ONNX ``RoiAlign`` node.

mmcv 2.1's ``RoIAlignFunction.symbolic`` writes ``Squeeze`` with an
``axes`` attribute, which opset 13 turned into an input, so the file fails
onnx's checker at opset 17 (``Unrecognized attribute: axes for operator
Squeeze``). It also shifts the RoIs by half a pixel itself for
``aligned=True`` and leaves ``RoiAlign``'s ``coordinate_transformation_mode``
at its default, which is ``'half_pixel'`` since opset 16: the shift would be
applied twice.

:func:`roi_align_symbolic` writes what mmcv's kernel computes, as
onnxruntime's ``RoiAlign`` (opset 16) computes it:

* the batch index is a ``Gather`` of column 0 with a scalar index (no
  ``Squeeze``), cast to int64; the boxes are columns 1 to 4;
* ``aligned=True``: ``coordinate_transformation_mode='half_pixel'``, i.e.
  the box scaled by ``spatial_scale`` minus 0.5, of any size (mmcv's
  ``aligned`` branch); ``aligned=False``: ``'output_half_pixel'``, no
  shift and each box at least one pixel wide and high (mmcv's other
  branch);
* ``sampling_ratio`` as given, 0 meaning ``ceil(bin size)`` samples per
  bin side in both;
* ``mode``: ``'avg'`` (the mean of the bilinear samples of a bin) as mmcv.
  ``'max'`` is refused: onnxruntime takes the max over the four weighted
  corner terms of each sample, mmcv the max over interpolated samples.

:func:`mmcv_roi_align_exportable` puts it in place of mmcv's for the time of
an export (it touches no file of mmcv).
"""
import contextlib
import sys
from typing import Iterator

import torch

__all__ = ['roi_align_symbolic', 'mmcv_roi_align_exportable', 'MIN_OPSET']

#: The first opset whose ``RoiAlign`` has ``coordinate_transformation_mode``
#: (without it, aligned RoIs narrower than a pixel are widened to one).
MIN_OPSET = 16


def roi_align_symbolic(opset: int):
    """The symbolic of mmcv's ``RoIAlignFunction`` for ``opset``.

    Args:
        opset (int): The opset being exported.

    Returns:
        callable: ``symbolic(g, input, rois, output_size, spatial_scale,
        sampling_ratio, pool_mode, aligned)`` as torch's legacy exporter
        calls it for an autograd Function.
    """

    def symbolic(g, input, rois, output_size, spatial_scale, sampling_ratio,
                 pool_mode, aligned):
        if opset < MIN_OPSET:
            raise ValueError(
                f"mmcv's RoIAlign exports to ONNX RoiAlign with "
                f'coordinate_transformation_mode, which needs opset >= '
                f'{MIN_OPSET}, but got opset {opset}')
        if pool_mode != 'avg':
            raise ValueError(
                "mmcv's RoIAlign with pool_mode='max' has no ONNX "
                "equivalent (onnxruntime's RoiAlign max mode takes the max "
                "of weighted corner terms); only pool_mode='avg' exports, "
                f'but got {pool_mode!r}')
        column = g.op('Constant', value_t=torch.tensor(0, dtype=torch.long))
        batch = g.op('Gather', rois, column, axis_i=1)
        batch = g.op('Cast', batch, to_i=torch.onnx.TensorProtoDataType.INT64)
        corners = g.op('Constant',
                       value_t=torch.tensor([1, 2, 3, 4], dtype=torch.long))
        boxes = g.op('Gather', rois, corners, axis_i=1)
        height, width = output_size
        return g.op(
            'RoiAlign',
            input,
            boxes,
            batch,
            coordinate_transformation_mode_s=('half_pixel' if aligned else
                                              'output_half_pixel'),
            mode_s=pool_mode,
            output_height_i=int(height),
            output_width_i=int(width),
            sampling_ratio_i=max(0, int(sampling_ratio)),
            spatial_scale_f=float(spatial_scale))

    return symbolic


@contextlib.contextmanager
def mmcv_roi_align_exportable(opset: int) -> Iterator[None]:
    """Within the block, mmcv's ``RoIAlignFunction`` exports with
    :func:`roi_align_symbolic` at ``opset``; its own symbolic is back after.

    Does nothing when ``mmcv.ops`` is not imported (then no model uses its
    RoIAlign, and importing it would only cost time).

    Args:
        opset (int): The opset being exported.
    """
    module = sys.modules.get('mmcv.ops.roi_align')
    function = getattr(module, 'RoIAlignFunction', None)
    if function is None:
        yield
        return
    own = function.__dict__['symbolic']
    function.symbolic = staticmethod(roi_align_symbolic(opset))
    try:
        yield
    finally:
        function.symbolic = own
