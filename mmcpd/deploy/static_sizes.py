"""Sizes read from tensor shapes, made constants for the legacy exporter.

While torch's legacy (TorchScript) exporter traces a model, ``x.shape[i]``
is not an ``int`` but a 0-d tensor recorded as a ``Shape`` / ``Gather``
node, and arithmetic on it (``x.shape[-1] // size[-1]``) is recorded too.
Several ops need their sizes as constants when they are exported:
``max_pool2d``'s ``kernel_size`` and ``adaptive_max_pool2d``'s
``output_size`` have no ONNX form that takes them from a tensor. The
exporter folds such size arithmetic into constants only where ONNX shape
inference knows every shape on the way, and one ``Resize`` to a size read
from another tensor loses the shapes downstream. So

* mmcv's ``MergingCell`` (NAS-FPN) pools by a kernel computed from two
  shapes (``Failed to export a node onnx::Cast ... because it is not
  constant``),
* mmdet's ``BFP`` (Libra R-CNN) pools to ``inputs[refine_level].size()[2:]``
  (``ONNX export of operator adaptive pooling, since output_size is not
  constant``).

An exported file takes one input shape (at most its batch axis is dynamic,
see :func:`~mmcpd.deploy.onnx_export.export_onnx`), so every spatial size
that is read from a shape is a constant of the file. :func:`static_sizes`
turns those traced sizes into ``int`` for the functions of
:data:`SIZED_FUNCTIONS`, in ``torch.nn.functional`` (looked up at call time
by ``F.interpolate``, ``nn.Upsample``, mmcv and mmdet alike), for the time
of the export only. Only 0-d integer tensors among the size arguments are
turned into ints (a float ``scale_factor`` or a pad ``value`` is left as it
is). A size computed from tensor *values* rather than shapes would be baked
in as well, exactly as the tracer already bakes in data-dependent control
flow: such a model cannot be exported by tracing either way.
"""
import contextlib
import functools
from typing import Any, Callable, Dict, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['static_sizes', 'concrete_size', 'SIZED_FUNCTIONS']

_POOLS = ('max_pool1d', 'max_pool2d', 'max_pool3d', 'avg_pool1d',
          'avg_pool2d', 'avg_pool3d')
_ADAPTIVE = ('adaptive_max_pool1d', 'adaptive_max_pool2d',
             'adaptive_max_pool3d', 'adaptive_avg_pool1d',
             'adaptive_avg_pool2d', 'adaptive_avg_pool3d')

#: Function of ``torch.nn.functional`` -> its size arguments, by name and
#: by position (the input being position 0).
SIZED_FUNCTIONS: Dict[str, Dict[str, int]] = {
    'interpolate': {'size': 1},
    'pad': {'pad': 1},
    **{name: {'output_size': 1} for name in _ADAPTIVE},
    **{
        name: {'kernel_size': 1, 'stride': 2, 'padding': 3}
        for name in _POOLS
    },
}


def _is_traced_int(value: Any) -> bool:
    return (isinstance(value, Tensor) and value.dim() == 0
            and not value.is_floating_point()
            and not value.is_complex() and value.dtype != torch.bool)


def concrete_size(value: Any) -> Any:
    """``value`` with its 0-d integer tensors (sizes read from shapes while
    tracing) turned into ``int``; sequences (``torch.Size`` included) are
    rebuilt as tuples or lists, anything else is returned as it is."""
    if _is_traced_int(value):
        return int(value)
    if isinstance(value, (tuple, list)) and any(
            _is_traced_int(v) for v in value):
        items = [int(v) if _is_traced_int(v) else v for v in value]
        return items if isinstance(value, list) else tuple(items)
    return value


def _concrete(function: Callable, sizes: Dict[str, int]) -> Callable:

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        if torch.jit.is_tracing():
            args = tuple(
                concrete_size(a) if i in sizes.values() else a
                for i, a in enumerate(args))
            kwargs = {
                k: concrete_size(v) if k in sizes else v
                for k, v in kwargs.items()
            }
        return function(*args, **kwargs)

    wrapper.__wrapped_static_sizes__ = function
    return wrapper


@contextlib.contextmanager
def static_sizes() -> Iterator[None]:
    """Within the block, the functions of :data:`SIZED_FUNCTIONS` in
    ``torch.nn.functional`` take sizes read from shapes as constants while
    a trace runs (``torch.jit.is_tracing()``); outside a trace they run as
    they are. The originals are restored on leaving."""
    originals: Dict[str, Callable] = {}
    try:
        for name, sizes in SIZED_FUNCTIONS.items():
            function = getattr(F, name, None)
            if function is None or hasattr(function,
                                           '__wrapped_static_sizes__'):
                continue  # absent in this torch, or swapped already
            originals[name] = function
            setattr(F, name, _concrete(function, sizes))
        yield
    finally:
        for name, function in originals.items():
            setattr(F, name, function)
