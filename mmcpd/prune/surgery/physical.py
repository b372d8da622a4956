"""Remove channels for real: slice tensors, update module attributes.

``prune_units`` takes a comb result and, per group, the units to remove;
every member tensor is sliced along its dim (parameters stay parameters,
buffers stay buffers, modules keep their classes; a fixed table keeps the
indices of its kept output channels, :mod:`~mmcpd.prune.spec.table_select`),
the attributes that
layers read in ``forward`` are set to the new widths, and the change comes
back as a :class:`~mmcpd.prune.spec.PrunedSpec`.
"""
import copy
from collections import defaultdict
from typing import Dict, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from mmcpd.comb import CombResult
from mmcpd.comb.remap import attr_value
from mmcpd.prune.surgery.list_attrs import whole_lists
from mmcpd.prune.surgery.positions import (conv_groups, kept_columns,
                                           removed_positions)
from mmcpd.prune.spec import PrunedSpec, tensor_holders
from mmcpd.prune.spec.check import width_attrs
from mmcpd.prune.spec.table_select import install_selectors


def attr_values(result: CombResult,
                removed: Mapping[int, Sequence[int]]) -> Dict[str, dict]:
    """New values of the attributes that follow group widths."""
    values: Dict[str, dict] = defaultdict(dict)
    for upd in result.attr_updates:
        new = attr_value(upd, removed)
        if new is not upd.old:
            values[upd.module][upd.attr] = new
    return values


#: What :func:`prune_units` reports per replaced tensor: the new tensor and,
#: per sliced dim, the kept indices of the old one.
Replaced = Dict[torch.Tensor, Tuple[torch.Tensor, Dict[int, torch.Tensor]]]


def slice_kept(tensor: torch.Tensor,
               keep: Mapping[int, torch.Tensor]) -> torch.Tensor:
    """``tensor`` with only the ``keep`` indices along each of its dims.

    A 2-d ``keep[dim]`` gives, per row (dim 0) of ``tensor``, its own kept
    indices along ``dim`` (a grouped conv's input channels, see
    :func:`~.positions.kept_columns`); it is gathered before the rows are
    selected.
    """
    for dim, idx in sorted(keep.items(), key=lambda kv: kv[1].dim() < 2):
        idx = idx.to(tensor.device)
        if idx.dim() == 2:
            view = [idx.shape[0]] + [1] * (tensor.dim() - 1)
            view[dim] = idx.shape[1]
            shape = list(tensor.shape)
            shape[dim] = idx.shape[1]
            tensor = tensor.gather(dim, idx.view(view).expand(shape))
        else:
            tensor = tensor.index_select(dim, idx)
    return tensor


@torch.no_grad()
def prune_units(model: nn.Module,
                result: CombResult,
                removed: Mapping[int, Sequence[int]],
                replaced: Optional[Replaced] = None) -> PrunedSpec:
    """Physically remove units of coupled groups, in place.

    Args:
        model (nn.Module): The model that ``result`` was combed from (at its
            current width).
        result (CombResult): Its coupled groups.
        removed (dict[int, list[int]]): Units to remove, by group id.
        replaced (dict, optional): If given, filled with ``{old tensor:
            (new tensor, {dim: kept indices})}`` for every sliced tensor
            (per row where 2-d, see :func:`slice_kept`),
            so that an optimizer can follow (:mod:`.optim_state`).
            Gradients of sliced parameters are sliced with them.

    Returns:
        PrunedSpec: New shapes of the sliced tensors and new attribute
        values of the touched modules. The comb result no longer matches the
        model: comb it again before pruning further.
    """
    indices = removed_positions(result.groups, removed)
    split = conv_groups(result.groups)
    # fixed tables cut for the first time get their index buffer
    install_selectors(model, {name for name, _ in indices})
    tensors = dict(model.named_parameters())
    tensors.update(model.named_buffers())
    holders = tensor_holders(model)
    modules = dict(model.named_modules())
    module_names = {id(m): n for n, m in modules.items()}
    spec = PrunedSpec()
    touched = set()
    by_name = defaultdict(dict)
    for (name, dim), idx in indices.items():
        by_name[name][dim] = idx
    for name, dims in by_name.items():
        old = tensors[name]
        keep = {
            dim: kept_columns(old.shape, dim, idx, split[(name, dim)], name)
            if (name, dim) in split else torch.tensor(
                [i for i in range(old.shape[dim]) if i not in idx],
                dtype=torch.long)
            for dim, idx in dims.items()
        }
        new = slice_kept(old.detach(), keep).clone()
        if isinstance(old, nn.Parameter):
            new = nn.Parameter(new, requires_grad=old.requires_grad)
            if old.grad is not None:
                new.grad = slice_kept(old.grad, keep).clone()
        if replaced is not None:
            replaced[old] = (new, keep)
        for mod, attr in holders[id(old)]:
            if isinstance(new, nn.Parameter):
                mod._parameters[attr] = new
            else:
                mod._buffers[attr] = new
        spec.shapes[name] = list(new.shape)
        # every module holding the tensor (shared weights) follows it
        touched.update(module_names[id(mod)] for mod, _ in holders[id(old)])
    values = whole_lists(attr_values(result, removed), modules)
    for mod_name, attrs in values.items():
        for attr, value in attrs.items():
            setattr(modules[mod_name], attr, value)
        touched.add(mod_name)
    for mod_name in touched:
        module = modules[mod_name]
        attrs = dict(values.get(mod_name, {}))
        attrs.update(width_attrs(module))
        for attr, value in attrs.items():
            setattr(module, attr, value)
        if attrs:
            spec.attrs[mod_name] = attrs
    model.train(model.training)  # caches of sliced tensors (TinyViT's ab)
    return spec


def pruned_copy(model: nn.Module, comb_result,
                removed: Mapping[int, Sequence[int]]
                ) -> Tuple[nn.Module, PrunedSpec]:
    """A physically pruned copy of ``model``; ``model`` is left as it is.

    Args:
        model (nn.Module): The masked model.
        comb_result (CombResult): Its comb result.
        removed (Mapping[int, Sequence[int]]): Removed units by group id.

    Returns:
        tuple[nn.Module, PrunedSpec]: The small model and its spec.
    """
    small = copy.deepcopy(model)
    removed = {int(k): list(v) for k, v in removed.items() if len(v)}
    spec = prune_units(small, comb_result, removed) if removed \
        else PrunedSpec()
    return small, spec
