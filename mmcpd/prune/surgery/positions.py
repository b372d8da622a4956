"""Which tensor positions removed units own: the one place that maps
units of coupled groups to indices of member tensors."""
from collections import defaultdict
from typing import Dict, List, Mapping, Sequence, Set, Tuple

import torch

from mmcpd.comb.group import CoupledGroup


def removed_positions(groups: Sequence[CoupledGroup],
                      removed: Mapping[int, Sequence[int]]
                      ) -> Dict[Tuple[str, int], Set[int]]:
    """Indices to remove per ``(tensor name, dim)``: for every member of
    every group, the indices along its dim that the removed units own.

    What physical pruning slices, masking zeroes and the cost model stops
    counting are these positions. For a grouped conv's input channels
    (``Member.groups > 1``) they count over all conv groups' columns
    (:func:`conv_groups`, :func:`kept_columns`).

    Args:
        groups (Sequence[CoupledGroup]): The groups of a comb result.
        removed (Mapping[int, Sequence[int]]): Units by group id.

    Raises:
        ValueError: A group id or unit does not exist, a group is frozen,
            or all units of a group would go.
    """
    by_id = {g.id: g for g in groups}
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
            owned = m.units
            dead = out[(m.name, m.dim)]
            for u in units:
                dead.update(owned[u])
    return out


def conv_groups(groups: Sequence[CoupledGroup]) -> Dict[Tuple[str, int], int]:
    """``(tensor name, dim) -> conv groups`` of the members whose positions
    count over the columns of every conv group (``Member.groups > 1``)."""
    return {(m.name, m.dim): m.groups
            for g in groups for m in g.members if m.groups > 1}


def kept_columns(shape: Sequence[int], dim: int, dead: Set[int],
                 groups: int, name: str = '') -> torch.Tensor:
    """Per row of a grouped conv's weight, the kept columns along ``dim``.

    Args:
        shape (Sequence[int]): The weight's shape, ``(out, in / groups,
            *kernel)``.
        dim (int): Its input dim (1).
        dead (set[int]): Removed input channels, over all conv groups:
            channel ``p`` is column ``p % shape[dim]`` of conv group ``p //
            shape[dim]``.
        groups (int): The conv's groups.
        name (str): The weight's name, for the error.

    Returns:
        Tensor: ``(out, kept columns)`` long indices: row ``r`` keeps the
        columns of conv group ``r // (out / groups)``.

    Raises:
        ValueError: The conv groups would keep different numbers of
            columns.
    """
    width = shape[dim]
    keep = [[j for j in range(width) if h * width + j not in dead]
            for h in range(groups)]
    if len({len(k) for k in keep}) != 1:
        raise ValueError(
            f'the conv groups of `{name}` would keep '
            f'{[len(k) for k in keep]} input channels: every conv group '
            'should keep as many as the others')
    rows = shape[0] // groups
    return torch.tensor(keep, dtype=torch.long).repeat_interleave(rows, 0)


def removed_counts(groups: Sequence[CoupledGroup],
                   removed: Mapping[int, Sequence[int]]
                   ) -> Dict[Tuple[str, int], float]:
    """How much each ``(tensor name, dim)`` shrinks when ``removed`` go: the
    removed positions, over the conv groups where they count over all
    (each conv group loses its share)."""
    split = conv_groups(groups)
    out = {}
    for key, dead in removed_positions(groups, removed).items():
        n, parts = len(dead), split.get(key, 1)
        out[key] = n // parts if n % parts == 0 else n / parts
    return out


def unit_channels(group: CoupledGroup) -> List[int]:
    """Channels of the group's root member that each unit owns."""
    for member in group.members:
        if member.role == 'out':
            return list(member.counts)
    return list(group.members[0].counts)
