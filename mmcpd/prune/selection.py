"""Which units to remove at a prune step: global ranking under guards."""
import heapq
from dataclasses import dataclass, replace
from typing import Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

import torch

from mmcpd.comb.group import CoupledGroup
from mmcpd.prune.cost import CostModel
from mmcpd.prune.surgery.positions import unit_channels
from mmcpd.prune.widths import (MEASURED, Quanta, describe, mixed_prefix,
                                quantum_of, units_to_remove)


@dataclass(frozen=True)
class Guards:
    """Limits that keep every layer alive and fast.

    Args:
        min_channels (int | Mapping[int, int] | str): A pruned group keeps
            at least this many channels (or all it has, if it has fewer);
            a mapping by group id (missing: 1), or ``'measured'`` until
            :func:`~mmcpd.prune.widths.with_quanta` makes it that mapping
            from a latency table. Defaults to 1.
        max_ratio (float): At most this fraction of a group's channels is
            removed, in (0, 1]. Defaults to 0.9.
        round_to (int | Mapping[int, int] | str): A pruned group keeps a
            multiple of this many channels (e.g. 8 for CPU and GPU
            kernels); a mapping by group id, or ``'measured'`` as
            ``min_channels``. Defaults to 1.
        quanta (Mapping[int, int], optional): Per group id, the multiple
            that group keeps instead (:func:`~mmcpd.prune.widths.
            width_quanta`). Defaults to None.
    """
    min_channels: Union[int, Mapping[int, int], str] = 1
    max_ratio: float = 0.9
    round_to: Union[int, Mapping[int, int], str] = 1
    quanta: Optional[Mapping[int, int]] = None


def _per_group(value, group_id: int, name: str) -> int:
    """A limit of :class:`Guards` for one group."""
    if value == MEASURED:
        raise ValueError(
            f'`{name}`={MEASURED!r} is decided per group from a latency '
            'table: resolve the guards with mmcpd.prune.widths.with_quanta '
            'first')
    return quantum_of(value, group_id)


class _GroupState:
    """Alive units of one group, most removable first."""

    def __init__(self,
                 group: CoupledGroup,
                 removed: Set[int],
                 scores: torch.Tensor,
                 costs: torch.Tensor,
                 guards: Guards,
                 rank_costs: Optional[torch.Tensor] = None,
                 allowed: Optional[Set[int]] = None):
        self.group = group
        self.allowed = allowed  # kept widths the cost allows; None: any
        self.channels = unit_channels(group)
        self.total = sum(self.channels)
        self.kept = self.total - sum(self.channels[u] for u in removed)
        self.min_kept = max(
            min(_per_group(guards.min_channels, group.id, 'min_channels'),
                self.total),
            self.total - int(guards.max_ratio * self.total + 1e-9),
            1)
        self.round_to = _per_group(guards.round_to, group.id, 'round_to') \
            if guards.quanta is None or group.id not in guards.quanta \
            else guards.quanta[group.id]
        alive = [u for u in range(group.num_units) if u not in removed]
        self.scores = scores
        self.costs = costs  # what the target counts
        self.rank_costs = costs if rank_costs is None else rank_costs
        prio = [(self._ratio(scores[u], self.rank_costs[u]), u)
                for u in alive]
        self.order = [u for _, u in sorted(prio)]
        self.pos = 0

    @staticmethod
    def _ratio(score, cost) -> float:
        cost = float(cost)
        return float(score) / cost if cost > 0 else float('inf')

    def next_move(self) -> Optional[Tuple[float, List[int], float]]:
        """``(priority, units, cost)`` of the smallest valid removal."""
        kept = self.kept
        units = []
        for u in self.order[self.pos:]:
            kept -= self.channels[u]
            units.append(u)
            if kept < self.min_kept:
                return None
            if kept % self.round_to == 0 and (self.allowed is None
                                              or kept in self.allowed):
                cost = float(sum(self.costs[v] for v in units))
                rank = float(sum(self.rank_costs[v] for v in units))
                if cost <= 0 or rank <= 0:
                    return None
                score = float(sum(self.scores[v] for v in units))
                return score / rank, units, cost
        return None

    def apply(self, units: List[int]) -> None:
        self.pos += len(units)
        self.kept -= sum(self.channels[u] for u in units)


def select_units(groups: Sequence[CoupledGroup],
                 scores: Mapping[int, torch.Tensor],
                 cost: CostModel,
                 removed: Mapping[int, Sequence[int]],
                 target: float,
                 guards: Guards = Guards(),
                 max_rounds: int = 8,
                 rank_cost: Optional[CostModel] = None
                 ) -> Dict[int, List[int]]:
    """Pick the units to remove so that ``target`` of the cost is gone.

    Units of all groups are ranked together by importance per cost,
    ``I_u / c_u``, where ``c_u`` is what removing ``u`` saves (params or
    FLOPs, given what is already removed): the cheapest loss increase per
    unit of cost goes first. A group's *move* removes its next lowest-ranked
    units, as few as keep the group's channel count a multiple of
    ``round_to``; moves that would break ``min_channels`` or ``max_ratio``
    are not made. Costs interact (removing an output channel also shrinks
    the next layer's input), so the cost is recounted exactly after each
    round of greedy moves.

    Args:
        groups (Sequence[CoupledGroup]): The groups that may be pruned.
        scores (Mapping[int, Tensor]): Per-unit importance by group id.
        cost (CostModel): Cost of the model.
        removed (Mapping[int, Sequence[int]]): Units removed so far.
        target (float): Fraction of the unpruned cost to have removed.
        guards (Guards): Per-group limits.
        max_rounds (int): Rounds of recounting. Defaults to 8.
        rank_cost (CostModel, optional): The cost that ranks the units
            (``I_u / c_u``), when it is not the one the target counts: e.g.
            rank by the latency proxy, stop at half the FLOPs. Defaults to
            ``cost``.

    Returns:
        dict[int, list[int]]: The newly removed units by group id (sorted;
        groups with none are left out).
    """
    full = cost.total()
    goal = full * (1.0 - target)
    done = {int(k): set(v) for k, v in removed.items()}
    new: Dict[int, List[int]] = {}
    moves: List[Tuple[float, int, List[int]]] = []
    for r in range(max_rounds):
        current = cost.total(done)
        if current <= goal:
            break
        # a round spends unit costs taken at its start; a cost whose
        # savings change much as widths fall closes only part of the gap
        aim = goal if r == max_rounds - 1 else current - cost.round_fraction \
            * (current - goal)
        costs = cost.unit_costs(done)
        ranks = costs if rank_cost is None else rank_cost.unit_costs(done)
        states = {
            g.id: _GroupState(g, done.get(g.id, set()), scores[g.id],
                              costs[g.id], guards, ranks[g.id],
                              _allowed(g, cost, rank_cost))
            for g in groups
        }
        heap = []
        for gid, state in states.items():
            move = state.next_move()
            if move is not None:
                heap.append((move[0], gid, move[1], move[2]))
        heapq.heapify(heap)
        if not heap:
            break
        while heap and current > aim:
            prio, gid, units, unit_cost = heapq.heappop(heap)
            state = states[gid]
            state.apply(units)
            done.setdefault(gid, set()).update(units)
            new.setdefault(gid, []).extend(units)
            moves.append((prio, gid, units))
            current -= unit_cost
            move = state.next_move()
            if move is not None:
                heapq.heappush(heap, (move[0], gid, move[1], move[2]))
    _return_slack(moves, done, new, cost, goal)
    return {gid: sorted(units) for gid, units in sorted(new.items()) if units}


def _return_slack(moves: List[Tuple[float, int, List[int]]],
                  done: Dict[int, Set[int]], new: Dict[int, List[int]],
                  cost: CostModel, goal: float) -> None:
    """Undo the moves the target does not need, in place.

    The greedy's last move may remove much more than the gap it closes (a
    block of 4 channels of a full-resolution trunk is several percent of a
    narrow net's FLOPs): 8x targets ended at 8.4-9.4x. Here the moves of
    this selection are undone, the most important per cost first, each only
    if the exactly recounted cost stays at or under ``goal``, so the result
    lands as near the target as whole moves allow without missing it. Only
    a group's latest move is undone, so every group keeps a width its
    guards allowed.
    """
    stacks: Dict[int, List[Tuple[float, List[int]]]] = {}
    for prio, gid, units in moves:
        stacks.setdefault(gid, []).append((prio, units))
    current = cost.total(done)
    while current < goal:
        tops = sorted(((stack[-1][0], gid) for gid, stack in stacks.items()
                       if stack), reverse=True)
        for _, gid in tops:
            units = stacks[gid][-1][1]
            trial = dict(done)
            trial[gid] = done[gid] - set(units)
            total = cost.total(trial)
            if total <= goal:
                current = total
                done[gid] = trial[gid]
                stacks[gid].pop()
                del new[gid][len(new[gid]) - len(units):]
                break
        else:
            return


def _allowed(group: CoupledGroup, cost: CostModel,
             rank_cost: Optional[CostModel]) -> Optional[Set[int]]:
    """Kept widths that the target's (else the ranking's) cost allows."""
    allowed = cost.allowed_widths(group)
    if allowed is None and rank_cost is not None:
        allowed = rank_cost.allowed_widths(group)
    return allowed


def max_removable(groups: Sequence[CoupledGroup], cost: CostModel,
                  guards: Guards) -> float:
    """The largest fraction of the cost that the guards let go."""
    done: Dict[int, Set[int]] = {}
    costs = cost.unit_costs()
    for group in groups:
        ones = torch.ones(group.num_units, dtype=torch.float64)
        state = _GroupState(group, set(), ones, costs[group.id], guards,
                            allowed=cost.allowed_widths(group))
        units = []
        while True:
            move = state.next_move()
            if move is None:
                break
            state.apply(move[1])
            units += move[1]
        if units:
            done[group.id] = set(units)
    full = cost.total()
    return 1.0 - cost.total(done) / full if full > 0 else 0.0


def check_reachable(groups: Sequence[CoupledGroup], cost: CostModel,
                    guards: Guards, target: float, ignore=()) -> float:
    """The largest removable fraction of the cost (:func:`max_removable`);
    a ValueError naming the limits when ``target`` exceeds it under
    ``guards`` (and ``ignore``), and which of ``min_channels=1`` and
    ``round_to=1`` (free widths) would reach it."""
    reachable = max_removable(groups, cost, guards)
    if target > reachable + 1e-9:
        hint = ''
        for change in (dict(min_channels=1), dict(round_to=1, quanta=None),
                       dict(min_channels=1, round_to=1, quanta=None)):
            free = max_removable(groups, cost, replace(guards, **change))
            if target <= free + 1e-9:
                names = ' and '.join(f'{k}={v}' for k, v in change.items()
                                     if k != 'quanta')
                hint = f'; {names} would allow {free:.3f}'
                break
        raise ValueError(
            f'`target` {target} cannot be reached: with min_channels='
            f'{describe(guards.min_channels)}, max_ratio={guards.max_ratio}'
            f', round_to={describe(guards.round_to)} and ignore='
            f'{tuple(ignore)!r}, at most {reachable:.3f} of the '
            f'{cost.metric} can be removed{hint}')
    return reachable


def select_ratio(groups: Sequence[CoupledGroup],
                 scores: Mapping[int, torch.Tensor],
                 ratio: float,
                 round_to: Quanta = 1) -> Dict[int, List[int]]:
    """The ``ratio`` lowest-scoring units of every group (uniform widths).

    At least one unit stays; with ``round_to`` (one multiple for all, or
    per group id: :func:`~mmcpd.prune.widths.width_quanta`) the kept
    channels are rounded to a multiple of it
    (:func:`~mmcpd.prune.widths.units_to_remove`; where units differ in
    width, the lowest-scoring prefix that keeps a multiple:
    :func:`~mmcpd.prune.widths.mixed_prefix`).

    Args:
        groups (Sequence[CoupledGroup]): The groups to prune.
        scores (Mapping[int, Tensor]): Per-unit importance by group id.
        ratio (float): Fraction of each group's units to remove.
        round_to (int | dict): Kept channels a multiple of this. Defaults
            to 1.

    Returns:
        dict[int, list[int]]: The removed units by group id (sorted).
    """
    removed = {}
    for group in groups:
        quantum = quantum_of(round_to, group.id)
        channels = unit_channels(group)
        order = torch.argsort(torch.as_tensor(scores[group.id]),
                              stable=True).tolist()
        if quantum > 1 and len(set(channels)) > 1:  # mixed widths
            drop = mixed_prefix(channels, order, ratio, quantum)
        else:
            drop = units_to_remove(group, ratio, quantum)
        if drop > 0:
            removed[group.id] = sorted(order[:drop])
    return removed
