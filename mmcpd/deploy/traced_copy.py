"""``copy.deepcopy`` of a tensor inside a traced forward, as ``clone``.

``Tensor.__deepcopy__`` copies the storage and makes the copy by
``new_empty([])`` and ``set_``: the legacy exporter records the copy as a
0-d ``new_empty`` whose shape it then does not know, and the first op that
slices it fails ONNX shape inference (``axes_vector.size() <=
input_shape.size() INTERNAL ASSERT FAILED at shape_type_inference.cpp``).
DDQ DETR's decoder deep-copies its self-attention mask after every layer
(``select_distinct_queries``) and writes a slice of the copy.

Within :func:`traceable_deepcopy`, deep-copying a plain tensor while a
trace runs gives ``tensor.clone()``: the same values, in a storage of its
own, recorded as one ``clone``. Outside a trace, and for tensor
subclasses (parameters included), deepcopy runs as it is.
"""
import contextlib
from typing import Iterator

import torch

__all__ = ['traceable_deepcopy']


@contextlib.contextmanager
def traceable_deepcopy() -> Iterator[None]:
    """Within the block, ``copy.deepcopy`` of a plain tensor while
    ``torch.jit.is_tracing()`` is ``tensor.clone()`` (with the result put
    in the deepcopy memo, so a tensor met twice is copied once)."""
    original = torch.Tensor.__deepcopy__
    if getattr(original, '_mmcpd_traceable', False):
        yield  # swapped already (nested)
        return

    def __deepcopy__(self, memo):
        if torch.jit.is_tracing() and type(self) is torch.Tensor:
            if id(self) not in memo:
                memo[id(self)] = self.clone()
            return memo[id(self)]
        return original(self, memo)

    __deepcopy__._mmcpd_traceable = True
    torch.Tensor.__deepcopy__ = __deepcopy__
    try:
        yield
    finally:
        torch.Tensor.__deepcopy__ = original
