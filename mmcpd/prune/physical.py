"""Remove channels for real: slice tensors, update module attributes.

``prune_units`` takes a comb result and, per group, the units to remove;
every member tensor is sliced along its dim (parameters stay parameters,
buffers stay buffers, modules keep their classes), the attributes that
layers read in ``forward`` are set to the new widths, and the change comes
back as a :class:`~mmcpd.prune.spec.PrunedSpec`.
"""
from collections import defaultdict
from typing import Dict, Mapping, Sequence

import torch
from torch import nn

from mmcpd.comb import CombResult
from .positions import removed_positions
from .spec import PrunedSpec, tensor_holders
from .spec_check import width_attrs


def attr_values(result: CombResult,
                removed: Mapping[int, Sequence[int]]) -> Dict[str, dict]:
    """New values of the attributes that follow group widths."""
    counts = {int(g): len(set(u)) for g, u in removed.items()}
    values: Dict[str, dict] = defaultdict(dict)
    for upd in result.attr_updates:
        drop = sum(counts.get(g, 0) * amount for g, amount in upd.per_unit)
        if not drop:
            continue
        name, _, index = upd.attr.partition('[')
        if index:  # an element of a list attribute: 'num_features[3]'
            seq = list(values[upd.module].get(name, upd.old))
            seq[int(index[:-1])] -= drop
            values[upd.module][name] = type(upd.old)(seq)
            continue
        if isinstance(upd.old, (tuple, list)):
            new = tuple(upd.old[:-1]) + (upd.old[-1] - drop, )
        else:
            new = upd.old - drop
        values[upd.module][upd.attr] = new
    return values


@torch.no_grad()
def prune_units(model: nn.Module, result: CombResult,
                removed: Mapping[int, Sequence[int]]) -> PrunedSpec:
    """Physically remove units of coupled groups, in place.

    Args:
        model (nn.Module): The model that ``result`` was combed from (at its
            current width).
        result (CombResult): Its coupled groups.
        removed (dict[int, list[int]]): Units to remove, by group id.

    Returns:
        PrunedSpec: New shapes of the sliced tensors and new attribute
        values of the touched modules. The comb result no longer matches the
        model: comb it again before pruning further.
    """
    indices = removed_positions(result.groups, removed)
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
        new = old.detach()
        for dim, idx in dims.items():
            keep = [i for i in range(new.shape[dim]) if i not in idx]
            new = new.index_select(dim, torch.tensor(keep,
                                                     device=new.device))
        new = new.clone()
        if isinstance(old, nn.Parameter):
            new = nn.Parameter(new, requires_grad=old.requires_grad)
        for mod, attr in holders[id(old)]:
            if isinstance(new, nn.Parameter):
                mod._parameters[attr] = new
            else:
                mod._buffers[attr] = new
        spec.shapes[name] = list(new.shape)
        # every module holding the tensor (shared weights) follows it
        touched.update(module_names[id(mod)] for mod, _ in holders[id(old)])
    values = attr_values(result, removed)
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
