"""Modules that output a fixed table over channels: a positional embedding.

DETR's sine positional embedding (mmdet's ``SinePositionalEncoding``) is
computed from the image's padding mask alone: output channel ``c`` (dim 1)
is a sine or cosine of frequency ``temperature ** (2 * (c // 2) /
num_feats)``, added to the transformer's stream channel ``c``. Its
frequencies depend on ``num_feats``, so the table cannot be made narrower
by shrinking ``num_feats``; but any channel of it can be dropped: the
table is computed at its full width and its output indexed to the kept
channels. The rule here gives the output channels ids of their own, those
of a member named ``<module>.kept_channels`` (dim 0, role ``'param'``):
the pruner slices that index buffer as it slices any other member,
installing it (``arange(width)``, with a forward hook that selects those
output channels) the first time (:mod:`mmcpd.prune.spec.table_select`).
A module already pruned so selects ``len(kept_channels)`` channels, and
its output channels get ids of that width.

Modules are recognised by the top-level package and name of their class,
so that nothing here imports mmdet.
"""
from typing import Any, Callable, Dict, Optional, Tuple

from torch import nn

from mmcpd.comb.labels import Block, LabelGraph
from mmcpd.comb.opaque import flat_tensors

#: Name of the index buffer of kept output channels of a fixed table.
SELECT_BUFFER = 'kept_channels'

#: (top-level package, class name) -> full width of the table's output
#: channels (dim 1), read off the module.
FIXED_TABLES: Dict[Tuple[str, str], Callable[[nn.Module], int]] = {
    ('mmdet', 'SinePositionalEncoding'): lambda m: 2 * int(m.num_feats),
}


def _key(module: nn.Module) -> Tuple[str, str]:
    cls = type(module)
    return cls.__module__.split('.')[0], cls.__name__


def is_fixed_table(module: nn.Module) -> bool:
    """Whether ``module`` outputs a fixed table over channels."""
    return _key(module) in FIXED_TABLES


def table_width(module: nn.Module) -> Optional[int]:
    """Full width of the table's output channels, or None where
    ``module`` is not a fixed table."""
    width = FIXED_TABLES.get(_key(module))
    return None if width is None else width(module)


def fixed_table(graph: LabelGraph, name: str, module: nn.Module,
                args: tuple, output: Any) -> None:
    """Output channel ``c`` (dim 1) is entry ``c`` of the member
    ``<name>.kept_channels``: its ids are that member's, whatever the
    inputs (a mask, or a feature map read for its shape only)."""
    outs = flat_tensors(output)[:1]
    for out in outs:
        if out.dim() < 2 or out.shape[1] < 2:
            graph.set_frozen(out, f'{type(module).__name__}@{name} gives '
                             'no channel dim')
            continue
        key = (f'{name}.{SELECT_BUFFER}', 0)
        ids = graph.leaf_ids.get(key)
        if ids is None or len(ids) != out.shape[1]:
            ids = graph.leaf_ids[key] = graph.new_ids((out.shape[1], ))
            graph.leaf_roles[key] = 'param'
        graph.set(out, [Block((1, ), ids)])
