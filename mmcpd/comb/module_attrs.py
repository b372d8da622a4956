"""Width attributes of modules that wrap layers: ``in_channels`` and co.

Torch's own layers keep their widths in attributes that the spec updates
(``in_channels``, ``out_features``, ...). Blocks built around them often
keep copies: a re-parameterisable block (RepVGG, MobileOne) reads its
``in_channels``, ``out_channels`` and ``groups`` when it fuses its branches
into one conv for deployment, long after pruning. Such an attribute that
equals the channel width of the block's input (``in_channels``) or output
(``out_channels``), or a ``groups`` equal to both (a depthwise block), is
recorded as a *soft* attribute rule: it follows the width where that width
shrinks evenly with the groups, and is left as it is otherwise (a stale
copy is what the model had before; it never freezes a group).
"""
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from mmcpd.comb.labels import LabelGraph, dim_ids
from mmcpd.comb.sizes import is_int

#: attribute -> which side of the module its width is read from.
WIDTH_ATTRS = {'in_channels': 'in', 'out_channels': 'out'}


def _channel_ids(graph: LabelGraph, value: Any) -> Optional[np.ndarray]:
    """Ids of dim 1 of an NC... tensor (the first one in ``value``)."""
    if isinstance(value, (list, tuple)):
        value = value[0] if len(value) else None
    if not isinstance(value, torch.Tensor) or value.dim() < 3:
        return None
    return dim_ids(graph, graph.get(value), 1)


def record_width_attrs(graph: LabelGraph, scope: str, module: nn.Module,
                       args: tuple, output: Any) -> None:
    """Record the width attributes of ``module`` after one call.

    Args:
        graph (LabelGraph): The trace's labels.
        scope (str): The module's name.
        module (nn.Module): The module that ran.
        args (tuple): Its positional inputs.
        output: What it returned.
    """
    if type(module).__module__.startswith('torch.nn'):
        return  # torch's layers: the spec sets their widths itself
    attrs = vars(module)
    sides = {}
    for attr, side in WIDTH_ATTRS.items():
        value = attrs.get(attr)
        if not is_int(value) or value <= 1:
            continue
        value = int(value)
        if side not in sides:
            sides[side] = _channel_ids(graph,
                                       args if side == 'in' else output)
        ids = sides[side]
        if ids is not None and len(ids) == value:
            graph.soft_attr_rules.append((scope, attr, value, ids))
    groups = attrs.get('groups')
    ids_in = sides.get('in')
    if (is_int(groups) and groups > 1 and ids_in is not None
            and groups == len(ids_in) == attrs.get('in_channels')
            == attrs.get('out_channels')):
        graph.soft_attr_rules.append((scope, 'groups', int(groups), ids_in))
