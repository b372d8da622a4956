"""Box decoding of MMDetection 3.3 under the ONNX exporter.

While ``torch.onnx.is_in_onnx_export()``, mmdet 3.3's box decoders with a
``max_shape`` (``DeltaXYWHBBoxCoder.decode`` through ``onnx_delta2bbox``,
``TBLRBBoxCoder``, ``distance2bbox``: an RPN's proposals, decoding in a
forward override) run ``from mmdet.core.export import
dynamic_clip_for_onnx``, a module of mmdet 2.x that 3.x removed: the export
fails with ``No module named 'mmdet.core'``.

:func:`mmdet_core_export` provides that module for the time of an export
(in ``sys.modules`` only, nothing is written to mmdet's files), with
:func:`dynamic_clip_for_onnx`: the clip that mmdet's eager branch does,
``x`` into ``[0, width]`` and ``y`` into ``[0, height]``.
"""
import contextlib
import importlib.util
import sys
import types
from typing import Iterator, Sequence, Tuple, Union

import torch
from torch import Tensor

__all__ = ['dynamic_clip_for_onnx', 'mmdet_core_export', 'MODULE']

#: What mmdet 3.3's decoders import while exporting.
MODULE = 'mmdet.core.export'


def _bound(value, like: Tensor) -> Union[float, Tensor]:
    if isinstance(value, Tensor):
        return value.to(like.dtype)
    return float(value)


def dynamic_clip_for_onnx(
        x1: Tensor, y1: Tensor, x2: Tensor, y2: Tensor,
        max_shape: Union[Sequence[int], Tensor]
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Clip box corners to an image, as mmdet's decoders do eagerly.

    mmdet 2.x's version divided by the shape, clamped to ``[0, 1]`` and
    multiplied back (a round-off of its own); this clamps directly, so the
    exported graph gives what torch gives.

    Args:
        x1, y1, x2, y2 (Tensor): Corner coordinates, of any one shape.
        max_shape (Sequence[int] | Tensor): ``(height, width, ...)`` of the
            image: ints (``img_shape`` of the data samples), or a 1-d tensor
            (a shape computed in the graph).

    Returns:
        tuple[Tensor]: The clipped ``x1, y1, x2, y2``.
    """
    if isinstance(max_shape, Tensor) and max_shape.dim() != 1:
        raise ValueError('`max_shape` should be (height, width) of one '
                         'image, but got a tensor of shape '
                         f'{list(max_shape.shape)}')
    height, width = _bound(max_shape[0], x1), _bound(max_shape[1], x1)
    zero = x1.new_zeros(())

    def clip(value: Tensor, high) -> Tensor:
        value = torch.maximum(value, zero)
        if isinstance(high, Tensor):
            return torch.minimum(value, high)
        return value.clamp(max=high)

    return (clip(x1, width), clip(y1, height), clip(x2, width),
            clip(y2, height))


def _missing(name: str) -> bool:
    if name in sys.modules:
        return False
    try:
        return importlib.util.find_spec(name) is None
    except ImportError:  # a parent package is missing
        return True


@contextlib.contextmanager
def mmdet_core_export() -> Iterator[None]:
    """Within the block, ``mmdet.core.export`` (and ``mmdet.core``, if
    missing) import from ``sys.modules`` and hold
    :func:`dynamic_clip_for_onnx`; both are gone after.

    Does nothing when mmdet is not imported (no model uses its decoders)
    or has the module itself (mmdet 2.x).
    """
    if 'mmdet' not in sys.modules or not _missing(MODULE):
        yield
        return
    parent = MODULE.rpartition('.')[0]
    added = {}
    if _missing(parent):
        added[parent] = types.ModuleType(parent)
        added[parent].__path__ = []  # a package, so that children import
    added[MODULE] = types.ModuleType(MODULE)
    added[MODULE].dynamic_clip_for_onnx = dynamic_clip_for_onnx
    sys.modules.update(added)
    try:
        yield
    finally:
        for name in added:
            if sys.modules.get(name) is added[name]:
                del sys.modules[name]
