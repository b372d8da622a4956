"""Load checkpoints with ``torch.load(weights_only=True)``.

``weights_only=True`` (torch's default since 2.6) unpickles only tensors,
containers and an allow-list of globals, so that opening a checkpoint cannot
run code. Checkpoints that mmengine 0.10.7's runner writes hold more than
tensors: the ``message_hub`` keeps
:class:`~mmengine.logging.HistoryBuffer` objects (numpy arrays inside, and
bound statistics methods pickled as ``getattr(HistoryBuffer, 'mean')``),
numpy scalars in ``runtime_info`` and a :class:`collections.Counter` in the
state of ``MultiStepLR``. This module allows exactly those types, and
replaces the ``getattr`` that pickle needs for the bound methods by one that
only returns HistoryBuffer's public statistics methods: allowing the builtin
``getattr`` would let a checkpoint reach ``eval`` through any allowed object.

Examples:
    >>> ckpt = load_checkpoint_file('work_dirs/epoch_1.pth')
    >>> with mmengine_safe_globals():     # e.g. around ``runner.resume``
    ...     runner.resume('work_dirs/epoch_1.pth')
"""
import os.path as osp
import pickle
import zipfile
from collections import Counter
from contextlib import contextmanager
from typing import Any, Callable, Iterator, List, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

__all__ = [
    'mmengine_safe_globals', 'add_mmengine_safe_globals',
    'load_checkpoint_file', 'CheckpointError', 'MMENGINE_SAFE_GLOBALS'
]

#: HistoryBuffer's built-in statistics (``_set_default_statistics``).
_STATISTICS = ('current', 'max', 'mean', 'min')
#: Numeric numpy dtypes a checkpoint may hold (object dtype is left out).
_NUMPY_DTYPES = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8,
                 np.uint16, np.uint32, np.uint64, np.float16, np.float32,
                 np.float64)


class CheckpointError(ValueError):
    """A file that is not a checkpoint, or one that does not fit."""


def _history_buffer_getattr(obj: Any, name: str) -> Callable:
    """``getattr`` restricted to HistoryBuffer's statistics methods.

    Pickle stores the functions in ``HistoryBuffer._statistics_methods`` as
    ``getattr(HistoryBuffer, 'min')``; nothing else in an mmengine
    checkpoint calls ``getattr``.

    Raises:
        pickle.UnpicklingError: For any other object or attribute.
    """
    allowed = obj is HistoryBuffer or type(obj) is HistoryBuffer
    if not allowed or name not in _STATISTICS:
        raise pickle.UnpicklingError(
            f'the checkpoint calls getattr({obj!r:.60}, {name!r}); only '
            f'HistoryBuffer statistics {list(_STATISTICS)} are allowed')
    return getattr(obj, name)


def _numpy_globals() -> List[Union[Callable, Tuple[Callable, str]]]:
    core = getattr(np, '_core', None) or np.core  # numpy 2 or numpy 1
    multiarray = core.multiarray
    items: List[Union[Callable, Tuple[Callable, str]]] = [np.ndarray, np.dtype]
    # numpy 2 pickles as ``numpy._core``, numpy 1 as ``numpy.core``.
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        items.append((multiarray._reconstruct, f'{module}._reconstruct'))
        items.append((multiarray.scalar, f'{module}.scalar'))
    for dtype in _NUMPY_DTYPES:
        cls = type(np.dtype(dtype))
        if cls is not np.dtype:  # numpy >= 1.25 has one class per dtype
            items.append(cls)
    return items


def _build_safe_globals() -> List[Union[Callable, Tuple[Callable, str]]]:
    items = [HistoryBuffer, Counter]
    items += [(_history_buffer_getattr, '__builtin__.getattr'),
              (_history_buffer_getattr, 'builtins.getattr')]
    items += _numpy_globals()
    return items


#: What ``weights_only`` loading needs for mmengine 0.10.7 checkpoints.
MMENGINE_SAFE_GLOBALS = _build_safe_globals()


@contextmanager
def mmengine_safe_globals() -> Iterator[None]:
    """Allow the types of mmengine checkpoints for ``weights_only`` loads.

    Use it around code that calls ``torch.load`` itself, such as
    ``Runner.resume`` or ``mmengine.runner.load_checkpoint`` (both use
    torch's default ``weights_only=True`` under torch >= 2.6).
    """
    # torch's ``safe_globals`` removes its entries on exit, even those that
    # ``add_mmengine_safe_globals`` had allowed for the whole process: add
    # (and later remove) only the ones not allowed yet.
    allowed = torch.serialization.get_safe_globals()
    missing = [g for g in MMENGINE_SAFE_GLOBALS if g not in allowed]
    with torch.serialization.safe_globals(missing):
        yield


def add_mmengine_safe_globals() -> None:
    """Allow the types of mmengine checkpoints for the whole process."""
    torch.serialization.add_safe_globals(MMENGINE_SAFE_GLOBALS)


def load_checkpoint_file(path: str,
                         map_location: Union[str, torch.device] = 'cpu',
                         weights_only: bool = True) -> dict:
    """Read a checkpoint file safely.

    Args:
        path (str): Path of a file written by ``torch.save``.
        map_location (str | torch.device): Where tensors go. Defaults to
            ``'cpu'``.
        weights_only (bool): Unpickle only tensors and the allow-list
            :data:`MMENGINE_SAFE_GLOBALS`. Set it to False only for files
            you trust: unpickling can run arbitrary code. Defaults to True.

    Returns:
        dict: The checkpoint; a bare state dict is returned as it is.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: ``path`` is not a torch checkpoint, holds something
            other than a dict, or needs globals outside the allow-list (the
            message lists them).
    """
    path = str(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint `{path}` does not exist')
    try:
        with mmengine_safe_globals():
            checkpoint = torch.load(
                path, map_location=map_location, weights_only=weights_only)
    except pickle.UnpicklingError as err:
        if weights_only and 'GLOBAL' in str(err):
            raise CheckpointError(_unsafe_message(path)) from err
        raise CheckpointError(
            f'`{path}` is not a readable PyTorch checkpoint: '
            f'{_reason(err)}') from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as err:
        raise CheckpointError(
            f'`{path}` is not a readable PyTorch checkpoint: '
            f'{_reason(err)}') from err
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f'checkpoint `{path}` should hold a dict, but holds a '
            f'{type(checkpoint).__name__}')
    return checkpoint


#: Starts of the lines of torch.load's advice that repeat on every error.
_BOILERPLATE = ('Weights only load failed', 'Please file an issue', '(1)',
                '(2)', 'Check the documentation', 'WeightsUnpickler error:')


def _reason(err: BaseException) -> str:
    """The informative line of torch.load's (long) error message."""
    text = str(err).replace('WeightsUnpickler error:', '\n')
    lines = [line.strip() for line in text.splitlines()]
    lines = [
        line for line in lines if line and not line.startswith(_BOILERPLATE)
    ]
    return lines[0] if lines else type(err).__name__


def _unsafe_message(path: str) -> str:
    with mmengine_safe_globals():
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # the listing is only a hint for the message
            unsafe = []
    listed = ', '.join(unsafe) if unsafe else 'unknown types'
    return (f'checkpoint `{path}` holds objects that weights_only loading '
            f'does not allow: {listed}. Load it with weights_only=False only '
            'if you trust where it comes from.')
