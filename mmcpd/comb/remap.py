"""The comb result of a model after some of its units were cut out.

Physical pruning slices every member tensor, so the positions a unit owns
move down by the number of removed positions before them, and a group keeps
only its kept units, renumbered in order. :func:`remap` rewrites a comb
result accordingly, without tracing the small model again: group ids stay
the same, so a group of the small model is the group of the same id in the
original one.
"""
from collections import defaultdict
from dataclasses import replace
from typing import Dict, List, Mapping, Sequence, Set, Tuple

import numpy as np

from mmcpd.comb.group import AttrUpdate, CoupledGroup, Member, Removed
from mmcpd.comb.result import CombResult, OpMacs


def attr_value(update: AttrUpdate, removed: Removed):
    """The value of ``update``'s attribute once the units ``removed[g]`` of
    each group ``g`` are gone: ``old`` minus what they remove (the last
    entry of a tuple), or ``old`` itself when nothing it follows shrank.

    Args:
        update (AttrUpdate): The attribute.
        removed (Mapping[int, Sequence[int]]): Removed units by group id.
    """
    drop = 0
    for g, amount in update.per_unit:
        gone = set(removed.get(g, ()))
        if isinstance(amount, int):
            drop += len(gone) * amount
        else:  # unit by unit
            drop += sum(amount[u] for u in gone)
    if not drop:
        return update.old
    if isinstance(update.old, (tuple, list)):
        return tuple(update.old[:-1]) + (update.old[-1] - drop, )
    return update.old - drop


def _unit_maps(groups: Sequence[CoupledGroup],
               removed: Mapping[int, Set[int]]) -> Dict[int, Dict[int, int]]:
    """Per group: old unit -> new unit, for the kept units."""
    maps = {}
    for group in groups:
        gone = removed.get(group.id, set())
        kept = [u for u in range(group.num_units) if u not in gone]
        maps[group.id] = {u: i for i, u in enumerate(kept)}
    return maps


def _shifts(groups: Sequence[CoupledGroup], removed: Mapping[int, Set[int]]
            ) -> Dict[Tuple[str, int], np.ndarray]:
    """Per (tensor, dim) that loses positions: the sorted lost positions."""
    lost: Dict[Tuple[str, int], Set[int]] = defaultdict(set)
    for group in groups:
        gone = removed.get(group.id)
        if not gone:
            continue
        for member in group.members:
            owned = member.units
            for u in gone:
                lost[(member.name, member.dim)].update(owned[u])
    return {k: np.array(sorted(v), dtype=np.int64) for k, v in lost.items()}


def _member(member: Member, gone: Set[int],
            lost: Dict[Tuple[str, int], np.ndarray]) -> Member:
    positions = lost.get((member.name, member.dim))
    index: List[int] = []
    counts: List[int] = []
    for u, owned in enumerate(member.units):
        if u in gone:
            continue
        owned = np.asarray(owned, dtype=np.int64)
        if positions is not None:
            owned = owned - np.searchsorted(positions, owned)
        index += owned.tolist()
        counts.append(len(owned))
    return Member(member.name, member.dim, member.role, tuple(index),
                  tuple(counts), member.groups)


def _check(groups: Sequence[CoupledGroup], removed: Removed
           ) -> Dict[int, Set[int]]:
    by_id = {g.id: g for g in groups}
    out = {}
    for gid, units in removed.items():
        units = {int(u) for u in units}
        if not units:
            continue
        group = by_id.get(int(gid))
        if group is None:
            raise ValueError(f'`removed` should name groups of the comb '
                             f'result, but got group {gid}')
        if min(units) < 0 or max(units) >= group.num_units:
            raise ValueError(
                f'`removed` units of group {gid} should be in [0, '
                f'{group.num_units}), but got {sorted(units)}')
        if len(units) >= group.num_units:
            raise ValueError(
                f'`removed` should leave a unit in every group, but got '
                f'all {group.num_units} units of group {gid}')
        out[int(gid)] = units
    return out


def remap(result: CombResult, removed: Removed) -> CombResult:
    """The comb result of the model with ``removed`` units cut out.

    Removed units leave their groups and the kept ones are renumbered in
    order; member indices are compacted as slicing compacts the tensors;
    ``old`` values of attribute updates become the pruned values; norms and
    op MACs lose the removed channels. Group ids, ``param_macs`` (MACs per
    element) and ``channel_acts`` (elements per channel) do not change.

    Args:
        result (CombResult): Comb result of the model before the cut.
        removed (Mapping[int, Sequence[int]]): Units cut out, by group id,
            in the numbering of ``result``.

    Returns:
        CombResult: What combing the cut model finds, group for group.

    Raises:
        ValueError: A group or unit does not exist, or a group would lose
            all its units.
    """
    gone = _check(result.groups, removed)
    if not gone:
        return result
    lost = _shifts(result.groups, gone)
    units = _unit_maps(result.groups, gone)
    groups = tuple(
        replace(group,
                members=tuple(
                    _member(m, gone.get(group.id, set()), lost)
                    for m in group.members),
                num_units=len(units[group.id]))
        for group in result.groups)
    attrs = tuple(
        replace(upd,
                old=attr_value(upd, gone),
                per_unit=tuple((g, a if isinstance(a, int) else tuple(
                    a[u] for u in sorted(units[g])))
                               for g, a in upd.per_unit))
        for upd in result.attr_updates)

    def relabel(g: int, u: int):
        new = units.get(g, {}).get(u) if g >= 0 else u
        return None if new is None else (g, new)

    norms = tuple(
        replace(site,
                channels=tuple(
                    c for c in (relabel(*ch) for ch in site.channels)
                    if c is not None)) for site in result.norms)
    ops = tuple(
        OpMacs(op.site, op.macs,
               tuple(
                   tuple((g, new[1], c) for g, u, c in dim
                         for new in [relabel(g, u)] if new is not None)
                   for dim in op.dims)) for op in result.op_macs)
    return CombResult(groups, attrs, norms, dict(result.param_macs),
                      list(result.warnings), list(result.unexecuted),
                      {k: list(v)
                       for k, v in result.channel_acts.items()}, ops)
