"""Remove channels for real: slice tensors, update module attributes.

``prune_units`` takes a comb result and, per group, the units to remove;
every member tensor is sliced along its dim (parameters stay parameters,
buffers stay buffers, modules keep their classes), the attributes that
layers read in ``forward`` are set to the new widths, and the change comes
back as a :class:`~mmcpd.prune.spec.PrunedSpec`.
"""
from collections import defaultdict
from typing import Dict, Mapping, Sequence, Set, Tuple

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.conv import _ConvNd

from mmcpd.comb import CombResult
from .spec import PrunedSpec


def removed_indices(result: CombResult,
                    removed: Mapping[int, Sequence[int]]
                    ) -> Dict[Tuple[str, int], Set[int]]:
    """Indices to remove per ``(tensor name, dim)``.

    Raises:
        ValueError: A group id or unit does not exist, a group is frozen,
            or all units of a group would go.
    """
    by_id = {g.id: g for g in result.groups}
    out: Dict[Tuple[str, int], Set[int]] = defaultdict(set)
    for gid, units in removed.items():
        units = sorted(set(int(u) for u in units))
        if not units:
            continue
        group = by_id.get(int(gid))
        if group is None:
            raise ValueError(f'group {gid} is not in the comb result')
        if not group.prunable:
            raise ValueError(f'group {gid} ({group.root}) is frozen: '
                             f'{group.frozen or "a single unit"}')
        if units[0] < 0 or units[-1] >= group.num_units:
            raise ValueError(f'group {gid} has {group.num_units} units, but '
                             f'unit {units[-1] if units[0] >= 0 else units[0]}'
                             ' was asked for')
        if len(units) >= group.num_units:
            raise ValueError(f'removing all {group.num_units} units of group '
                             f'{gid} ({group.root}) would remove the layer')
        for m in group.members:
            for u in units:
                out[(m.name, m.dim)].update(m.units[u])
    return out


def attr_values(result: CombResult,
                removed: Mapping[int, Sequence[int]]) -> Dict[str, dict]:
    """New values of the attributes that follow group widths."""
    counts = {int(g): len(set(u)) for g, u in removed.items()}
    values: Dict[str, dict] = defaultdict(dict)
    for upd in result.attr_updates:
        drop = sum(counts.get(g, 0) * amount for g, amount in upd.per_unit)
        if not drop:
            continue
        if isinstance(upd.old, (tuple, list)):
            new = tuple(upd.old[:-1]) + (upd.old[-1] - drop, )
        else:
            new = upd.old - drop
        values[upd.module][upd.attr] = new
    return values


def _standard_attrs(module: nn.Module) -> dict:
    """Width attributes of torch's own layers, read off their tensors."""
    if isinstance(module, _ConvNd):
        w = module.weight
        if module.transposed:
            return dict(in_channels=w.shape[0],
                        out_channels=w.shape[1] * module.groups)
        return dict(in_channels=w.shape[1] * module.groups,
                    out_channels=w.shape[0])
    if isinstance(module, nn.Linear):
        return dict(in_features=module.weight.shape[1],
                    out_features=module.weight.shape[0])
    if isinstance(module, _NormBase):
        t = module.weight if module.weight is not None else \
            module.running_mean
        return dict(num_features=t.shape[0]) if t is not None else {}
    if isinstance(module, nn.GroupNorm) and module.weight is not None:
        return dict(num_channels=module.weight.shape[0])
    if isinstance(module, nn.LayerNorm) and module.weight is not None:
        return dict(normalized_shape=tuple(module.weight.shape))
    if isinstance(module, nn.PReLU):
        return dict(num_parameters=module.weight.numel())
    if isinstance(module, nn.MultiheadAttention):
        return dict(head_dim=module.embed_dim // module.num_heads)
    return {}


def _holders(model: nn.Module):
    """Every (module, attr) that holds each parameter or buffer object."""
    holders = defaultdict(list)
    for mod in model.modules():
        for attr, p in mod._parameters.items():
            if p is not None:
                holders[id(p)].append((mod, attr))
        for attr, b in mod._buffers.items():
            if b is not None:
                holders[id(b)].append((mod, attr))
    return holders


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
    indices = removed_indices(result, removed)
    tensors = dict(model.named_parameters())
    tensors.update(model.named_buffers())
    holders = _holders(model)
    modules = dict(model.named_modules())
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
        touched.add(name.rpartition('.')[0])
    values = attr_values(result, removed)
    for mod_name, attrs in values.items():
        for attr, value in attrs.items():
            setattr(modules[mod_name], attr, value)
        touched.add(mod_name)
    for mod_name in touched:
        module = modules[mod_name]
        attrs = dict(values.get(mod_name, {}))
        attrs.update(_standard_attrs(module))
        for attr, value in attrs.items():
            setattr(module, attr, value)
        if attrs:
            spec.attrs[mod_name] = attrs
    return spec
