"""Modules whose insides the tracer cannot see, with a rule for the whole
module call.

mmcv's RoIAlign and RoIPool run a C++ op that writes into a ``new_zeros``
buffer: the tracer sees neither what it reads nor what it writes, so
:class:`~mmcpd.comb.opaque.Provenance` would freeze everything the call
touches (in a two-stage detector: the whole FPN). Yet what they compute is
known: each output channel is the same channel of the feature map, sampled
(bilinearly, or by max) at the boxes. A rule here says so for the whole
call; the ops inside it are not handled one by one (their sizes read off
the input's channels are the rule's business). DETR's sine positional
embedding is a fixed table whose channels can be selected
(:mod:`~mmcpd.comb.fixed_tables`).

Modules are recognised by the top-level package and name of their class,
so that nothing here imports mmcv.
"""
from typing import Any, Callable, Dict, Optional, Tuple

from torch import nn

from mmcpd.comb.fixed_tables import FIXED_TABLES, fixed_table
from mmcpd.comb.labels import Block, LabelGraph, dim_ids
from mmcpd.comb.opaque import flat_tensors

ModuleRule = Callable[[LabelGraph, str, nn.Module, tuple, Any], None]


def per_channel(graph: LabelGraph, name: str, module: nn.Module, args: tuple,
                output: Any) -> None:
    """Output channel ``c`` (dim 1) is a function of input channel ``c``
    alone: the channels pass through. ``args[0]`` is the ``(N, C, H, W)``
    feature map; its other labelled dims (positions) are frozen, as a
    resize freezes them."""
    feats = args[0] if args else None
    labels = graph.get(feats)
    via = f'{type(module).__name__}@{name}'
    for block in labels:
        if block.dims != (1, ):
            graph.freeze(block.ids, f'{via} samples labelled positions')
    ids = dim_ids(graph, labels, 1)
    for out in flat_tensors(output)[:1]:
        if ids is not None and out.dim() > 1 and out.shape[1] == len(ids):
            graph.set(out, [Block((1, ), ids)])
        else:
            graph.set_frozen(out, f'unlabelled input of {via}')


#: (top-level package, class name) -> rule.
MODULE_RULES: Dict[Tuple[str, str], ModuleRule] = {
    ('mmcv', 'RoIAlign'): per_channel,
    ('mmcv', 'RoIPool'): per_channel,
    **{key: fixed_table
       for key in FIXED_TABLES},
}


def module_rule(module: nn.Module) -> Optional[ModuleRule]:
    """The rule for calls of ``module``, or None (its ops are traced)."""
    cls = type(module)
    return MODULE_RULES.get((cls.__module__.split('.')[0], cls.__name__))
