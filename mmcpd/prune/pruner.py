"""The pruner: one object that scores, selects and removes units.

:class:`Pruner` holds the algorithm of a CPD run, free of any training
framework: the comb result of the unpruned model, the importance, the cost
models, the guards, and the units removed so far (by group id, in the
unpruned model's unit numbering, so history, spec and resume never depend
on when the cuts happened). :class:`~mmcpd.hooks.CPDHook` decides when to
call it; :func:`mmcpd.prune_model` calls it once.

Two ways to remove units (``shrink``):

- ``'physical'``: the model is cut for real at every step
  (:func:`~mmcpd.prune.physical.prune_units`), together with every
  optimizer's param groups and state (:mod:`.optim_state`) and any copies
  of the model (an EMA); the pruner keeps the comb result of the cut model
  (:func:`~mmcpd.comb.remap.remap`) for the next step, and training runs
  on the small model from then on.
- ``'mask'``: removed units stay in the tensors, held at zero
  (:class:`~mmcpd.prune.dead.DeadUnits`); shapes never change.

Both choose exactly the same units: the importance of the units still in
the model is mapped back to the unpruned numbering and one selection
(:func:`~mmcpd.prune.selection.select_units`) runs on the unpruned groups.
"""
import time
from copy import deepcopy
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from mmcpd.comb import CombResult
from mmcpd.comb.remap import remap
from .closed_loop import LatencyLoop
from .cost import ACT_WEIGHT, METRICS, CostModel, model_cost
from .dead import DeadUnits
from .importance import BaseImportance
from .optim_state import shrink_optimizer
from .physical import Replaced, prune_units
from .selection import Guards, check_reachable, select_ratio, select_units
from .spec import PrunedSpec

SHRINK_MODES = ('physical', 'mask')
Removed = Dict[int, List[int]]


def check_pruner_args(metric: str, rank_by: Optional[str],
                      shrink: str) -> None:
    """ValueErrors naming a bad ``metric``, ``rank_by`` or ``shrink``."""
    if metric not in METRICS:
        raise ValueError(f'`metric` should be one of {METRICS}, but '
                         f'got {metric!r}')
    if rank_by is not None and rank_by not in METRICS:
        raise ValueError(f'`rank_by` should be None or one of '
                         f'{METRICS}, but got {rank_by!r}')
    if shrink not in SHRINK_MODES:
        raise ValueError(f'`shrink` should be one of {SHRINK_MODES}, '
                         f'but got {shrink!r}')


class Pruner:
    """Scores, selects and removes units of a model's coupled groups.

    Args:
        model (nn.Module): The model to prune, at its unpruned width.
        comb (CombResult): Its comb result (:func:`mmcpd.comb_model`).
        importance (BaseImportance): The importance score.
        metric (str): The cost that ``target`` counts: ``'params'``,
            ``'flops'`` or ``'latency'``. Defaults to ``'params'``.
        guards (Guards): Per-group limits. Defaults to ``Guards()``.
        rank_by (str, optional): The cost that ranks units if not
            ``metric``. Defaults to None.
        act_weight (float): MACs per written activation element in the
            ``'latency'`` cost. Defaults to ``ACT_WEIGHT``.
        shrink (str): ``'physical'`` or ``'mask'``. Defaults to
            ``'physical'``.
        latency_table (dict, optional): The model's measured latency table
            (:func:`mmcpd.deploy.latency_table.latency_table`), for
            ``'latency'``. Defaults to None.

    Examples:
        >>> pruner = Pruner(model, mmcpd.comb_model(model, x),
        ...                 MagnitudeImportance(), metric='flops')
        >>> new = pruner.step(0.5)       # scores and selects
        >>> pruner.apply(model, new, optimizers=[optimizer])
    """

    def __init__(self,
                 model: nn.Module,
                 comb: CombResult,
                 importance: BaseImportance,
                 metric: str = 'params',
                 guards: Guards = Guards(),
                 rank_by: Optional[str] = None,
                 act_weight: float = ACT_WEIGHT,
                 shrink: str = 'physical',
                 latency_table: Optional[dict] = None):
        check_pruner_args(metric, rank_by, shrink)
        self.comb = comb
        self.current = comb
        self.importance = importance
        self.metric = metric
        self.guards = guards
        self.shrink = shrink
        self.removed: Removed = {}
        self.params_cost = model_cost(model, comb, 'params')
        # FLOPs are known when the comb counted them; model_cost names
        # what is missing when they are the target
        self.flops_cost = model_cost(model, comb, 'flops') \
            if comb.param_macs or metric == 'flops' else None
        round_to = guards.round_to
        self.cost: CostModel = dict(
            params=self.params_cost, flops=self.flops_cost).get(
                metric) or model_cost(model, comb, metric, act_weight,
                                      latency_table, round_to)
        self.rank_cost = None if rank_by in (None, metric) else model_cost(
            model, comb, rank_by, act_weight, latency_table, round_to)
        self.dead: Optional[DeadUnits] = None
        self._spec = PrunedSpec()
        importance.setup(model, comb.prunable)

    @property
    def groups(self) -> list:
        """The prunable groups of the unpruned model."""
        return self.comb.prunable

    def reachable(self, target: float, ignore: Sequence[str] = ()) -> float:
        """The largest removable fraction of the cost; a ValueError when
        ``target`` exceeds it (see
        :func:`~mmcpd.prune.selection.check_reachable`)."""
        return check_reachable(self.groups, self.cost, self.guards, target,
                               ignore)

    def kept_units(self) -> Dict[int, List[int]]:
        """Per group, the unpruned numbers of the units still there, in the
        order of the current model's units."""
        kept = {}
        for group in self.comb.groups:
            gone = set(self.removed.get(group.id, ()))
            kept[group.id] = [
                u for u in range(group.num_units) if u not in gone
            ]
        return kept

    def scores(self) -> Dict[int, torch.Tensor]:
        """The importance in the unpruned numbering (removed units: inf)."""
        scores = self.importance.scores()
        if self.shrink == 'mask':
            return scores
        kept = self.kept_units()
        out = {}
        for group in self.groups:
            full = torch.full((group.num_units, ), float('inf'),
                              dtype=torch.float64)
            now = scores.get(group.id)
            if now is not None:
                full[kept[group.id]] = now.to(torch.float64)
            out[group.id] = full
        return out

    def select(self, target: float) -> Removed:
        """The units to remove now, so that ``target`` of the cost is gone
        (unpruned numbering)."""
        return select_units(
            self.groups,
            self.scores(),
            self.cost,
            self.removed,
            target,
            self.guards,
            rank_cost=self.rank_cost)

    def step(self, target: float) -> Removed:
        """Select the units to remove now and forget the importance; call
        :meth:`apply` with the result."""
        new = self.select(target)
        self.importance.reset()
        return new

    def measured_step(self,
                      model: nn.Module,
                      target: float,
                      measure: Callable[[nn.Module], float],
                      loop: LatencyLoop,
                      rounds: Optional[int] = None,
                      reachable: float = 1.0) -> Tuple[Removed, dict]:
        """:meth:`step` to a *measured* ``target``: the selection is made at
        the predicted fractions a :class:`~.closed_loop.LatencyLoop` asks
        for, each candidate cut out of a CPU copy of ``model``
        (:meth:`candidate`) and measured by ``measure`` (latency over the
        unpruned model's), until the measured fraction removed is
        ``target``; then the importance is reset.

        With ``loop.calibrate`` and nothing removed yet, the model is
        first measured with those fractions of every group's units removed
        (by importance) and a calibratable cost (``LatencyCost``) is
        fitted to them; the pairs seed the loop.

        Returns:
            tuple: The units to remove now (unpruned numbering, for
            :meth:`apply`) and the loop's log.
        """
        def predicted(new: Removed) -> float:
            return 1.0 - self.cost.total(
                self.with_removed(new)) / self.cost.total()

        calibration = None
        if loop.calibrate and not self.removed and hasattr(
                self.cost, 'calibrate'):
            start = time.perf_counter()
            quanta = self.guards.quanta or self.guards.round_to
            samples = []
            for ratio in loop.calibrate:
                units = select_ratio(self.groups, self.scores(), ratio,
                                     quanta)
                samples.append(
                    (units, float(measure(self.candidate(model, units)))))
            shares = self.cost.calibrate(samples)
            loop.points += [(predicted(u), 1.0 - m) for u, m in samples]
            calibration = dict(
                shares=[round(v, 4) for v in shares],
                measured=[round(m, 4) for _, m in samples],
                seconds=round(time.perf_counter() - start, 2))
        new, log = loop.run(target, self.select, predicted,
                            lambda n: measure(self.candidate(model, n)),
                            reachable, rounds)
        if calibration is not None:
            log.update(calibration=calibration,
                       seconds=log['seconds'] + calibration['seconds'])
        self.importance.reset()
        return new, log

    @torch.no_grad()
    def candidate(self, model: nn.Module,
                  new: Mapping[int, Sequence[int]]) -> nn.Module:
        """A CPU copy of ``model`` with ``new`` units (unpruned numbering)
        removed too, cut for real, in eval mode; ``model`` and the pruner
        are left as they are."""
        if self.shrink == 'mask':
            from .convert import pruned_copy
            small = pruned_copy(model, self.comb, self.with_removed(new))[0]
        else:
            small = deepcopy(model)
            delta = self.to_current(new)
            if delta:
                prune_units(small, self.current, delta)
        return small.cpu().eval()

    def with_removed(self, new: Mapping[int, Sequence[int]]) -> Removed:
        """The units removed so far and ``new`` (unpruned numbering), one
        sorted list per group that loses any."""
        out = {g: list(u) for g, u in self.removed.items()}
        for gid, units in new.items():
            merged = set(out.get(int(gid), ()))
            merged.update(int(u) for u in units)
            if merged:
                out[int(gid)] = sorted(merged)
        return out

    def to_current(self, new: Mapping[int, Sequence[int]]) -> Removed:
        """``new`` (unpruned numbering) in the numbering of the current,
        cut model."""
        if self.shrink == 'mask':
            return {int(g): sorted(int(u) for u in v)
                    for g, v in new.items() if len(v)}
        kept = self.kept_units()
        out = {}
        for gid, units in new.items():
            where = {u: i for i, u in enumerate(kept[int(gid)])}
            units = sorted(where[int(u)] for u in units)
            if units:
                out[int(gid)] = units
        return out

    @torch.no_grad()
    def apply(self,
              model: nn.Module,
              new: Mapping[int, Sequence[int]],
              optimizers: Sequence[torch.optim.Optimizer] = (),
              copies: Sequence[nn.Module] = ()) -> Replaced:
        """Remove ``new`` units (unpruned numbering) from ``model``.

        Args:
            model (nn.Module): The pruned model, as the pruner left it.
            new (Mapping[int, Sequence[int]]): Units to remove now.
            optimizers (Sequence[Optimizer]): Optimizers of ``model``; their
                param groups and state follow (``'physical'``) or the state
                of removed entries is zeroed (``'mask'``).
            copies (Sequence[nn.Module]): Models of the same architecture
                that follow ``model`` (EMA copies), cut or zeroed alike.

        Returns:
            dict: ``{old tensor: (new tensor, {dim: kept indices})}`` of
            ``model`` (empty in ``'mask'`` mode).
        """
        delta = self.to_current(new)
        self.removed = self.with_removed(new)
        replaced: Replaced = {}
        if self.shrink == 'mask':
            self.dead = DeadUnits(model, self.comb.groups, self.removed)
            self.dead.zero_tensors()
            for optimizer in optimizers:
                self.dead.zero_optimizer_state(optimizer)
            for copy in copies:
                DeadUnits(copy, self.comb.groups,
                          self.removed).zero_tensors()
            return replaced
        if not delta:
            return replaced
        spec = prune_units(model, self.current, delta, replaced)
        # each cut's spec lists what it touched: later values win
        self._spec.shapes.update(spec.shapes)
        for module, attrs in spec.attrs.items():
            self._spec.attrs.setdefault(module, {}).update(attrs)
        for optimizer in optimizers:
            shrink_optimizer(optimizer, replaced)
        for copy in copies:
            prune_units(copy, self.current, delta)
        self.current = remap(self.current, delta)
        self.importance.setup(model, self.current.prunable)
        return replaced

    def small(self, model: nn.Module) -> Tuple[nn.Module, PrunedSpec]:
        """The small model and its spec against the unpruned one: ``model``
        itself (``'physical'``) or a cut copy of it (``'mask'``)."""
        if self.shrink == 'mask':
            from .convert import pruned_copy
            return pruned_copy(model, self.comb, self.removed)
        return model, self.spec(model)

    def spec(self, model: nn.Module) -> PrunedSpec:
        """The spec of the pruned ``model`` against the unpruned one (in
        ``'mask'`` mode, of the model cut out of a copy)."""
        if self.shrink == 'mask':
            return self.small(model)[1]
        return PrunedSpec(
            {k: list(v)
             for k, v in self._spec.shapes.items()},
            {k: dict(v)
             for k, v in self._spec.attrs.items()})

    def state_dict(self) -> dict:
        """Plain data: the unpruned comb result, the removed units, the
        mode and the importance state."""
        return dict(
            comb=self.comb.to_dict(),
            removed={str(k): list(v)
                     for k, v in self.removed.items()},
            shrink=self.shrink,
            importance=self.importance.state_dict())

    def load_state_dict(self,
                        state: Mapping,
                        model: Optional[nn.Module] = None) -> None:
        """Restore :meth:`state_dict`.

        Args:
            state (Mapping): What :meth:`state_dict` returned.
            model (nn.Module, optional): In ``'physical'`` mode, the model
                as built (unpruned), cut here to the removed units; to cut
                optimizers and copies too, call :meth:`apply` with the
                removed units instead and load only the importance state.
        """
        removed = {int(k): [int(u) for u in v]
                   for k, v in state['removed'].items() if len(v)}
        if self.shrink == 'physical' and removed:
            if model is None:
                raise ValueError(
                    '`model` should be the unpruned model to cut, but got '
                    'None (a physical pruner restores by cutting it)')
            self.apply(model, removed)
        else:
            self.removed = removed
        self.importance.load_state_dict(state.get('importance', {}))
