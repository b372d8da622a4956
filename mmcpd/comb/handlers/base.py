"""The handler table and what a handler gets to see."""
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import torch
from torch import nn

from mmcpd.comb.labels import LabelGraph

Handler = Callable[['OpContext'], None]
HANDLERS: Dict[Any, Handler] = {}


def register_in(table: Dict[Any, Callable], *funcs) -> Callable:
    """Register a rule in ``table`` for torch functions (lists of them
    allowed, missing ones skipped)."""

    def wrap(rule: Callable) -> Callable:
        for func in funcs:
            for f in (func if isinstance(func, list) else [func]):
                if f is not None:
                    table[f] = rule
        return rule

    return wrap


def register(*funcs) -> Callable[[Handler], Handler]:
    """Register a handler for torch functions (missing ones are skipped)."""
    return register_in(HANDLERS, *funcs)


def method(name: str):
    """``torch.Tensor.<name>``, or None on torch versions without it."""
    return getattr(torch.Tensor, name, None)


def function(name: str) -> list:
    """``torch.<name>`` and ``torch.nn.functional.<name>``, where they
    exist."""
    found = []
    for module in (torch, torch.nn.functional):
        f = getattr(module, name, None)
        if f is not None and f not in found:
            found.append(f)
    return found


def _tensors(value) -> List[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


@dataclass
class OpContext:
    """One op call of the traced forward.

    Args:
        graph (LabelGraph): The trace's labels.
        func (callable): The torch function called.
        args (tuple): Positional arguments.
        kwargs (dict): Keyword arguments.
        out: What the function returned.
        scope (str): Name of the innermost module running, '' for the root.
        module (nn.Module, optional): That module.
        name (str): The op's name.
        call_index (int): For channel-mixing ops, how many calls of this op
            the module made before in the same call of the module.
    """
    graph: LabelGraph
    func: Any
    args: tuple
    kwargs: dict
    out: Any
    scope: str
    module: Optional[nn.Module] = None
    name: str = ''
    call_index: int = 0
    via: str = field(init=False)

    def __post_init__(self):
        self.via = f'{self.name}@{self.scope or "model"}'

    def arg(self, index: int, name: str, default=None):
        """An argument given by position or by keyword."""
        if len(self.args) > index:
            return self.args[index]
        return self.kwargs.get(name, default)

    @property
    def inputs(self) -> List[torch.Tensor]:
        return _tensors(self.args) + _tensors(list(self.kwargs.values()))

    @property
    def outputs(self) -> List[torch.Tensor]:
        return _tensors(self.out)

    def freeze_inputs(self, reason: str) -> None:
        for t in self.inputs:
            for block in self.graph.get(t):
                self.graph.freeze(block.ids, reason)

    def frozen_output(self, reason: str) -> None:
        """Outputs get new ids that are frozen, on every dim of size > 1.

        Used where an op's effect on channels is unknown: whatever it feeds
        must not be pruned through it.
        """
        for t in self.outputs:
            self.graph.set_frozen(t, reason)


def handle_unknown(ctx: OpContext) -> None:
    """No handler: freeze what the op touches, and say so."""
    labelled = any(ctx.graph.get(t) for t in ctx.inputs)
    if not labelled:
        return  # a constant or an op on unlabelled data: nothing to track
    reason = f'no handler for op `{ctx.name}` in `{ctx.scope or "model"}`'
    ctx.freeze_inputs(reason)
    ctx.frozen_output(reason)
    ctx.graph.warnings.append(reason)
