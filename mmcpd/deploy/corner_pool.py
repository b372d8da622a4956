"""Export mmcv's ``CornerPool`` (CornerNet, CentripetalNet) without
``cummax``, which ONNX has no operator for (torch's exporter refuses
``aten::cummax`` at every opset).

Corner pooling is a running maximum along one image axis (from the far
edge for ``left`` and ``top``). :func:`running_max` computes the values of
``torch.cummax`` as a Hillis-Steele scan: after the step of shift ``s``,
position ``i`` holds the maximum of positions ``i - 2s + 1 .. i``, so
``ceil(log2(size))`` steps of a ``Max`` and a ``Concat`` give the maximum
of every prefix, exactly (a maximum rounds nothing).

:func:`mmcv_corner_pool_exportable` puts it in place of ``CornerPool``'s
forward for the time of an export; nothing is changed outside the block.
"""
import contextlib
import sys
from typing import Iterator

import torch
from torch import Tensor

__all__ = ['running_max', 'mmcv_corner_pool_exportable']


def running_max(x: Tensor, dim: int) -> Tensor:
    """``torch.cummax(x, dim).values`` by ``ceil(log2(size))`` maxima of
    ``x`` and itself shifted along ``dim``."""
    size = x.size(dim)
    shift = 1
    while shift < size:
        x = torch.cat([
            x.narrow(dim, 0, shift),
            torch.maximum(
                x.narrow(dim, shift, size - shift),
                x.narrow(dim, 0, size - shift))
        ], dim)
        shift *= 2
    return x


def _corner_pool_forward(self, x: Tensor) -> Tensor:
    """``CornerPool.forward`` with :func:`running_max` for ``cummax``."""
    dim, flip = self.cummax_dim_flip[self.mode]
    if flip:
        return running_max(x.flip(dim), dim).flip(dim)
    return running_max(x, dim)


@contextlib.contextmanager
def mmcv_corner_pool_exportable() -> Iterator[None]:
    """Within the block, mmcv's ``CornerPool`` (if mmcv's corner pool
    module is imported) pools by :func:`running_max`."""
    module = sys.modules.get('mmcv.ops.corner_pool')
    pool = getattr(module, 'CornerPool', None)
    if pool is None:
        yield
        return
    original = pool.forward
    pool.forward = _corner_pool_forward
    try:
        yield
    finally:
        pool.forward = original
