"""Swap a function for another wherever it is bound, for a block.

mmcv's C++ ops reach a model through many names: ``mmcv.ops``, the module
that defines them, every module that imported them by name (mmdet's TOOD
head, a layer's ``forward`` through its module's globals) and, for an
autograd ``Function`` called as ``Function.apply(...)``, the class. The
comb (stand-ins that the tracer sees), the CPU fallbacks of CUDA-only ops
and the ONNX export all replace such an op for a block and must put every
binding back after it, so they share :func:`rebound`.
"""
import contextlib
import sys
from typing import Iterator, List, Sequence, Tuple

__all__ = ['rebound']


@contextlib.contextmanager
def rebound(pairs: Sequence[Tuple[object, object]],
            attributes: Sequence[Tuple[object, str, object]] = ()
            ) -> Iterator[None]:
    """Inside, every module-level name (of every imported module) bound to
    an ``original`` of ``pairs`` is bound to its replacement (matched by
    identity), and each ``(owner, name, value)`` of ``attributes`` is set
    on its owner (a class whose attribute was inherited: deleted on exit,
    so the inherited one shows again). Restored on exit, in reverse order,
    so nested blocks unwind cleanly.

    Args:
        pairs: ``(original, replacement)`` pairs.
        attributes: ``(owner, name, value)`` to set for the block; the
            owner must not hold ``name`` itself (it is deleted on exit).
    """
    swapped: List[Tuple[object, str, object]] = []
    try:
        for owner, name, value in attributes:
            setattr(owner, name, value)
            swapped.append((owner, name, None))
        if pairs:
            for module in list(sys.modules.values()):
                namespace = getattr(module, '__dict__', None)
                if not isinstance(namespace, dict):
                    continue
                for key, value in list(namespace.items()):
                    for original, replacement in pairs:
                        if value is original:
                            swapped.append((namespace, key, original))
                            namespace[key] = replacement
        yield
    finally:
        for owner, key, original in reversed(swapped):
            if isinstance(owner, dict):
                owner[key] = original
            else:
                delattr(owner, key)
