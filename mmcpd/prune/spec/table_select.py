"""Kept channels of fixed tables: an index buffer and a forward hook.

A fixed table (DETR's sine positional embedding, see
:mod:`mmcpd.comb.fixed_tables`) cannot shrink: its values depend on its
full width. It is computed at that width, and its output channels (dim 1)
are indexed to the kept ones by a forward hook reading the module's long
buffer ``kept_channels``. The buffer is a member of its coupled group like
any other: the cut slices it (``arange(width)`` keeps the indices of the
channels that stay), the state dict carries it, the spec gives its shape,
and ONNX exports the selection as a ``Gather`` of a constant.

A model gets the buffer and hook only when a table's channels are cut
(:func:`install_selectors`, from the cut and from
:func:`~mmcpd.prune.spec.apply_spec`), so an unpruned model's state dict
stays the one its checkpoints have. A masked model keeps the whole table:
the kept channels are the same, and the removed ones meet only removed
input channels of the layers they feed (their columns are zero) or norms
that run over the kept channels; verification checks that it is so.
"""
from typing import Iterable, List, Optional

import torch
from torch import nn

from mmcpd.comb.fixed_tables import SELECT_BUFFER, table_width


def select_kept(module: nn.Module, args: tuple, output: torch.Tensor):
    """Forward hook: the table's output at its kept channels (dim 1)."""
    index = getattr(module, SELECT_BUFFER)
    if index.device != output.device:
        index = index.to(output.device)
    return output.index_select(1, index)


def selector_of(model: nn.Module, name: str) -> Optional[nn.Module]:
    """The fixed table whose kept-channel buffer ``name`` would be (a
    ``state_dict`` name), or None where ``name`` is no such buffer."""
    mod_name, _, attr = name.rpartition('.')
    if attr != SELECT_BUFFER:
        return None
    try:
        module = model.get_submodule(mod_name)
    except AttributeError:
        return None
    return module if table_width(module) is not None else None


def install_selector(module: nn.Module, device=None) -> bool:
    """Give a fixed table its buffer of kept channels (all of them, on
    ``device``) and the hook that selects them; False where it has them
    already."""
    if SELECT_BUFFER in module._buffers:
        return False
    width = table_width(module)
    module.register_buffer(SELECT_BUFFER, torch.arange(width, device=device))
    module.register_forward_hook(select_kept)
    return True


def install_selectors(model: nn.Module, names: Iterable[str]) -> List[str]:
    """Install the selector of every fixed table whose kept-channel buffer
    is among ``names`` and missing from ``model``.

    Args:
        model (nn.Module): The model, changed in place.
        names (Iterable[str]): Tensor names (members to cut, or the
            shapes of a spec); others are ignored.

    Returns:
        list[str]: The buffers installed.
    """
    installed = []
    device = next((p.device for p in model.parameters()), None)
    for name in names:
        module = selector_of(model, name)
        if module is not None and install_selector(module, device):
            installed.append(name)
    return installed
