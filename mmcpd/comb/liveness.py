"""Which ops of a trace reach the model's outputs.

A forward may compute what it never uses (YOLOv3's MobileNetV2 backbone
runs its last ``conv2`` and returns earlier stages only). mmengine's
counter counts the ops of a JIT trace, which drops such dead code, so the
comb must not count them either: :class:`Liveness` records, for every op
the tracer sees, which earlier ops made the tensors it reads; from the
forward's outputs backwards, the ops reached are live, the others dead,
and :meth:`~mmcpd.comb.labels.LabelGraph.drop_dead` removes the dead ones'
costs. The channels and groups do not change: a dead op still ties its
channels as it did.

An op that writes in place (its output is an input, ``__setitem__``,
``out=``) is a writer of its tensor's storage (the base of a view): every
later read of that storage, through any view, depends on it. Ops with
effects beyond their outputs are live whatever reads them: writes into
parameters, buffers, tensors kept on modules or the inputs, and data taken
out of torch (``.item()``, ``.numpy()``, ...: it may steer the forward).

Where the tracer cannot see all the data flow (a C++ extension op wrote a
tensor, the outputs are not plain tensors, lists, tuples or dicts), what
is dead is unknown: every op counts, as before.
"""
from typing import Any, List, Optional, Set

import torch
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary

from mmcpd.comb.opaque import _ESCAPES, flat_tensors

_WRITES_ARG0 = {'__setitem__'}


def _storage_key(t: torch.Tensor) -> torch.Tensor:
    base = t._base
    return base if base is not None else t


class Liveness:
    """The data flow between the ops of one trace.

    Args:
        model (nn.Module): The traced model (its parameters, buffers and
            tensor attributes outlive the forward).
        inputs: The example inputs.
    """

    def __init__(self, model: nn.Module, inputs: Any):
        #: tensor -> index of the op that made it.
        self.made = WeakIdKeyDictionary()
        #: storage (base tensor) -> indices of the ops that wrote into it.
        self.writes = WeakIdKeyDictionary()
        #: per op, the indices of the ops it depends on.
        self.reads: List[List[int]] = []
        #: ops live whatever reads them (effects beyond their outputs).
        self.roots: Set[int] = set()
        #: why liveness is unknown ('' while it is known).
        self.unknown = ''
        self.persistent = WeakIdKeyDictionary()
        for t in list(model.parameters()) + list(model.buffers()) + \
                flat_tensors(inputs):
            self.persistent[_storage_key(t)] = True
        for m in model.modules():
            for value in vars(m).values():
                for t in flat_tensors(value):
                    self.persistent[_storage_key(t)] = True

    def _sources(self, tensors: List[torch.Tensor]) -> Set[int]:
        found: Set[int] = set()
        for t in tensors:
            op = self.made.get(t)
            if op is not None:
                found.add(op)
            found.update(self.writes.get(_storage_key(t), ()))
        return found

    def op(self, func, name: str, args, kwargs, out) -> int:
        """Record one op call (after it ran); returns its index."""
        index = len(self.reads)
        ins = flat_tensors(args) + flat_tensors(list(kwargs.values()))
        self.reads.append(sorted(self._sources(ins)))
        try:
            escapes = func in _ESCAPES
        except TypeError:  # unhashable callable
            escapes = False
        if escapes:
            self.roots.add(index)
        in_ids = {id(t) for t in ins}
        written = []
        if name in _WRITES_ARG0 and args and isinstance(args[0], torch.Tensor):
            written.append(args[0])
        for t in flat_tensors(out):
            if id(t) in in_ids or t in self.made:
                written.append(t)  # in place, or a tensor made before
            else:
                self.made[t] = index
        for t in written:
            key = _storage_key(t)
            self.writes.setdefault(key, []).append(index)
            if key in self.persistent:
                self.roots.add(index)
        return index

    def outputs_unknown(self, why: str) -> None:
        """The data flow is not all seen: every op counts."""
        self.unknown = self.unknown or why

    def live(self, outputs: Any) -> Optional[Set[int]]:
        """Indices of the ops that reach ``outputs`` (or have effects
        beyond their outputs); None where that is unknown."""
        tensors = _plain_tensors(outputs)
        if tensors is None:
            self.outputs_unknown('outputs that are not tensors, lists, '
                                 'tuples or dicts of them')
        elif not tensors:
            self.outputs_unknown('no tensor outputs')
        if self.unknown:
            return None
        live: Set[int] = set()
        todo = list(self.roots | self._sources(tensors))
        while todo:
            op = todo.pop()
            if op in live:
                continue
            live.add(op)
            todo.extend(r for r in self.reads[op] if r not in live)
        return live


def _plain_tensors(value) -> Optional[List[torch.Tensor]]:
    """The tensors of nested lists, tuples and dicts; None where something
    else holds data (which tensors it holds is not known)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return []
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        found: List[torch.Tensor] = []
        for v in value:
            inner = _plain_tensors(v)
            if inner is None:
                return None
            found += inner
        return found
    return None
