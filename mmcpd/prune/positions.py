"""Which tensor positions removed units own: the one place that maps
units of coupled groups to indices of member tensors."""
from collections import defaultdict
from typing import Dict, Mapping, Sequence, Set, Tuple

from mmcpd.comb.group import CoupledGroup


def removed_positions(groups: Sequence[CoupledGroup],
                      removed: Mapping[int, Sequence[int]]
                      ) -> Dict[Tuple[str, int], Set[int]]:
    """Indices to remove per ``(tensor name, dim)``: for every member of
    every group, the indices along its dim that the removed units own.

    What physical pruning slices, masking zeroes and the cost model stops
    counting are these positions.

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
