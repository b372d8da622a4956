"""Data that flows around the tracer: numpy, Python scalars, C++ extensions.

The tracer sees torch functions only. Data can leave them and come back:

* an *escape* turns a tensor into numpy or Python data (``.numpy()``,
  ``np.asarray(t)``, ``.tolist()``, ``.item()``, ``float(t)``, ...);
* a *re-entry* makes a tensor of such data (``torch.tensor``,
  ``torch.as_tensor``, ``torch.from_numpy``, which the tracer does not even
  see);
* a C++ extension op (``mmcv.ops`` and the like) reads tensors and writes
  its result into a buffer made by ``new_empty``/``new_zeros``, or returns
  a new tensor, without calling any torch function.

Pruning cannot follow channels through any of these, so :class:`Provenance`
freezes both sides, with a warning naming the op and the module: the
channels of an escaping tensor, and every tensor that re-enters after an
escape; for an invisible write or a tensor that no traced op made, the
module call it happened in (its labelled inputs, and the labelled tensors
made in it that no traced op read) and the tensor itself.
"""
import itertools
from dataclasses import dataclass, field
from typing import Any, List, Optional, Set, Tuple

import torch
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary

from mmcpd.comb.labels import Block, LabelGraph

_ESCAPES = {
    torch.Tensor.numpy, torch.Tensor.tolist, torch.Tensor.item,
    torch.Tensor.__array__, torch.Tensor.__float__, torch.Tensor.__int__,
    torch.Tensor.__index__, torch.Tensor.__complex__
}
_REENTRIES = {
    torch.tensor, torch.as_tensor, torch.asarray, torch.Tensor.new_tensor,
    torch.frombuffer
}
# factories and the value they fill with (None: uninitialised)
_BLANKS = {
    torch.empty: None, torch.empty_like: None, torch.Tensor.new_empty: None,
    torch.empty_strided: None, torch.zeros: 0, torch.zeros_like: 0,
    torch.Tensor.new_zeros: 0, torch.ones: 1, torch.ones_like: 1,
    torch.Tensor.new_ones: 1, torch.full: 'fill', torch.full_like: 'fill',
    torch.Tensor.new_full: 'fill'
}
# in-place ops that overwrite everything they write to, whatever was there
_OVERWRITES = {
    'copy_', 'fill_', 'zero_', 'normal_', 'uniform_', 'bernoulli_',
    'random_', 'exponential_', 'geometric_', 'cauchy_', 'log_normal_',
    '__setitem__', 'index_put_', 'index_copy_', 'masked_fill_',
    'scatter_', 'index_fill_', 'masked_scatter_', 'set_', 'resize_'
}


def flat_tensors(value) -> List[torch.Tensor]:
    """The tensors in a (nested) list, tuple or dict."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in flat_tensors(v)]
    return []


@dataclass
class _Call:
    """One call of a module: where an invisible op would run."""
    name: str
    inputs: List[Block]
    made: List[Tuple[int, List[Block]]] = field(default_factory=list)


class Provenance:
    """Where every tensor of a trace comes from.

    Args:
        graph (LabelGraph): The trace's labels.
        model (nn.Module): The traced model: its parameters, buffers and
            tensor attributes exist before the forward.
        inputs: The example inputs.
    """

    def __init__(self, graph: LabelGraph, model: nn.Module, inputs: Any):
        self.graph = graph
        self.known = WeakIdKeyDictionary()
        self.blank = WeakIdKeyDictionary()
        self.serial = WeakIdKeyDictionary()
        self.read: Set[int] = set()
        self.escaped = ''
        #: the first data flow the tracer could not see ('' while none).
        self.unseen = ''
        self.calls: List[_Call] = [_Call('', [])]
        self._count = itertools.count()
        for t in itertools.chain(model.parameters(), model.buffers(),
                                 flat_tensors(inputs)):
            self.known[t] = True
        for m in model.modules():
            for value in vars(m).values():
                for t in flat_tensors(value):
                    self.known[t] = True

    # module calls (from module hooks, where the tracer is active: the
    # bookkeeping's own torch calls must not be traced) -------------------
    def enter(self, name: str, args) -> None:
        with torch._C.DisableTorchFunction():
            inputs = [b for t in flat_tensors(args) for b in self.graph.get(t)]
        self.calls.append(_Call(name, inputs))

    def leave(self, output) -> None:
        with torch._C.DisableTorchFunction():
            self._leave(output)

    def _leave(self, output) -> None:
        call = self.calls.pop()
        for t in flat_tensors(output):
            if self._hidden(t):
                how = 'written' if t in self.blank else 'made'
                self.opaque(t, call, f'module `{call.name}` returns a '
                            f'tensor {how} outside torch')
        self._made(output, self.calls[-1])

    # op calls ----------------------------------------------------------
    def before(self, name: str, scope: str, args, kwargs) -> None:
        """Give tensors that come from outside the trace frozen labels."""
        ins = flat_tensors(args) + flat_tensors(list(kwargs.values()))
        for t in ins:
            serial = self.serial.get(t)
            if serial is not None:
                self.read.add(serial)
        for t in ins:
            written = (name in _OVERWRITES and args and t is args[0]
                       ) or kwargs.get('out') is t
            if written and t in self.blank:
                del self.blank[t]  # written by a traced op
            elif self._hidden(t):
                where = f'`{name}` in `{scope or "model"}` reads a tensor'
                if t in self.blank:
                    self.opaque(t, self.blank[t][1],
                                f'{where} written outside torch')
                else:
                    self.opaque(t, self.calls[-1],
                                f'{where} that no traced op made')

    def after(self, func, name: str, scope: str, args, kwargs,
              out) -> None:
        """Note what ``func`` made; freeze escapes and re-entries."""
        where = f'`{name}` in `{scope or "model"}`'
        if func in _ESCAPES:
            x = args[0] if args else None
            reason = f'{where} takes channels out of torch'
            for block in self.graph.get(x):
                self.graph.freeze(block.ids, reason)
            if self.graph.get(x):
                self.graph.warnings.append(reason)
            self.escaped = self.escaped or where
            return
        outs = flat_tensors(out)
        ins = {id(t) for t in flat_tensors(args) +
               flat_tensors(list(kwargs.values()))}
        for t in outs:
            self.known[t] = True
            if id(t) in ins and t in self.blank:
                del self.blank[t]  # written in place by a traced op
        if func in _BLANKS and outs:
            fill = _BLANKS[func]
            if fill == 'fill':
                fill = kwargs.get('fill_value', args[-1] if args else None)
            self.blank[outs[0]] = (fill, self.calls[-1])
        elif func in _REENTRIES and self.escaped and outs and \
                id(outs[0]) not in ins:
            self._freeze_new(outs[0], f'{where} makes a tensor after '
                             f'{self.escaped} took data out of torch')
        self._made(out, self.calls[-1])

    def traced(self, output) -> None:
        """``output`` of a module call is accounted for by a rule of its
        own (:mod:`mmcpd.comb.module_rules`), however it was written."""
        for t in flat_tensors(output):
            self.blank.pop(t, None)
            self.known[t] = True

    # helpers -----------------------------------------------------------
    def _hidden(self, t: torch.Tensor) -> bool:
        """Made or written outside torch."""
        if t in self.blank:
            fill = self.blank[t][0]
            if t.numel() == 0:
                return False
            if fill is None:
                return True  # read before any traced op wrote it
            if isinstance(fill, (int, float, bool)):
                return not bool((t == fill).all())
            return False
        return t not in self.known and self.graph.leaf_name(t) is None

    def _made(self, out, call: _Call) -> None:
        for t in flat_tensors(out):
            blocks = self.graph.get(t)
            if blocks:
                serial = self.serial.get(t)
                if serial is None:
                    serial = self.serial[t] = next(self._count)
                call.made.append((serial, blocks))

    def _freeze_new(self, t: torch.Tensor, reason: str) -> None:
        self.graph.set_frozen(t, reason)
        self.graph.warnings.append(reason)

    def opaque(self, t: torch.Tensor, call: Optional[_Call],
               reason: str) -> None:
        """``t`` was made outside torch during ``call``: freeze the call's
        labelled inputs, the labelled tensors made in it that no traced op
        read, and ``t``."""
        reason += ' (a C++ extension op, numpy or a cached tensor?)'
        self.unseen = self.unseen or reason
        if call is not None:
            for block in call.inputs:
                self.graph.freeze(block.ids, reason)
            for serial, blocks in call.made:
                if serial not in self.read:
                    for block in blocks:
                        self.graph.freeze(block.ids, reason)
        self.blank.pop(t, None)
        self.known[t] = True
        self._freeze_new(t, reason)
