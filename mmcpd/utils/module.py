"""Copies of modules, and callables named in configs."""
import copy
import importlib
from typing import Callable, Optional, Union

import torch
from torch import nn

#: A forward override: ``forward(model, inputs)``, its import path, or None.
Forward = Union[str, Callable, None]


@torch.no_grad()
def cpu_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` on the CPU, made without a second copy on
    the model's device: each parameter and buffer is copied straight to the
    CPU (``copy.deepcopy(model).cpu()`` of a CUDA model first allocates the
    whole copy on the GPU)."""
    memo = {}
    for param in model.parameters():
        memo[id(param)] = nn.Parameter(
            param.detach().to('cpu', copy=True),
            requires_grad=param.requires_grad)
    for buffer in model.buffers():
        memo[id(buffer)] = buffer.detach().to('cpu', copy=True)
    return copy.deepcopy(model, memo)


def import_callable(value: Union[str, Callable, None],
                    name: str) -> Optional[Callable]:
    """``value`` if callable (or None), else the callable at its import
    path ``'package.module.attribute'``; errors name the field ``name``."""
    if value is None or callable(value):
        return value
    if not isinstance(value, str) or '.' not in value:
        raise TypeError(f'`{name}` should be a callable or its import path '
                        f"like 'package.module.function', but got {value!r}")
    module, _, attr = value.rpartition('.')
    try:
        found = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ImportError(f'`{name}`={value!r} cannot be imported: '
                          f'{err}') from err
    if not callable(found):
        raise TypeError(f'`{name}`={value!r} is a {type(found).__name__}, '
                        'not a callable')
    return found


def callable_name(value: Forward) -> Optional[str]:
    """The import path of a callable (as a config would name it), the path
    itself if ``value`` is one, or None."""
    if value is None or isinstance(value, str):
        return value
    return f'{value.__module__}.{value.__qualname__}'
