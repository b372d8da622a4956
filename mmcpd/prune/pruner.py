"""The pruner: one object that scores, selects and removes units.

:class:`Pruner` holds the algorithm of a CPD run, free of any training
framework: the comb result of the unpruned model, the importance, the cost
models, the guards, and the units removed so far (by group id, in the
unpruned model's unit numbering, so history, spec and resume never depend
on when the cuts happened). :class:`~mmcpd.engine.hooks.CPDHook` decides when
to call it; :func:`mmcpd.prune_model` calls it once.

How removed units leave the model, cut out (``'physical'``) or held at
zero (``'mask'``), is a shrink mode (:mod:`.shrink`); both choose exactly
the same units: one selection (:func:`~mmcpd.prune.selection.select_units`)
runs on the unpruned groups.
"""
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from mmcpd.comb import CombResult
from mmcpd.comb.group import Removed
from mmcpd.prune.closed_loop import LatencyLoop
from mmcpd.prune.cost import ACT_WEIGHT, CostModel, model_cost
from mmcpd.prune.settings import check_pruner_args
from mmcpd.prune.importance import BaseImportance
from mmcpd.prune.selection import (Guards, check_reachable, select_ratio,
                                   select_units)
from mmcpd.prune.shrink import SHRINK_MODES, ShrinkMode
from mmcpd.prune.spec import PrunedSpec
from mmcpd.prune.surgery.dead import DeadUnits
from mmcpd.prune.surgery.physical import Replaced


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
        self.mode: ShrinkMode = SHRINK_MODES[shrink]()
        self.removed: Dict[int, List[int]] = {}
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
        #: What the cuts so far changed (``'physical'``): later cuts win.
        self.cuts = PrunedSpec()
        #: Whether norms over channels must count only kept ones while the
        #: model runs (``'mask'`` with channels removed).
        self.exact_norms = False
        self._importance_state: Optional[dict] = None
        importance.setup(model, comb.prunable)

    @property
    def shrink(self) -> str:
        """The shrink mode's name: ``'physical'`` or ``'mask'``."""
        return self.mode.name

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
        """The importance in the unpruned numbering (removed units: inf),
        averaged over the DDP ranks: a collective, every rank calls it."""
        return self.mode.full_scores(self, self.importance.scores())

    def select(self,
               target: float,
               scores: Optional[Mapping[int, torch.Tensor]] = None
               ) -> Removed:
        """The units to remove now, so that ``target`` of the cost is gone
        (unpruned numbering), by ``scores`` (:meth:`scores` if None)."""
        return select_units(
            self.groups,
            self.scores() if scores is None else scores,
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
                      reachable: float = 1.0,
                      scores: Optional[Mapping[int, torch.Tensor]] = None
                      ) -> Tuple[Removed, dict]:
        """:meth:`step` to a *measured* ``target``: the selection is made at
        the predicted fractions a :class:`~.closed_loop.LatencyLoop` asks
        for, each candidate cut out of a CPU copy of ``model``
        (:meth:`candidate`) and measured by ``measure`` (latency over the
        unpruned model's), until the measured fraction removed is
        ``target``; then the importance is reset. Every round selects by
        the same ``scores`` (:meth:`scores` once, if None): only the
        caller's rank measures, and no collective runs here when they are
        given.

        With ``loop.calibrate`` and nothing removed yet, the model is
        first measured with those fractions of every group's units removed
        (by importance) and a calibratable cost (``LatencyCost``) is
        fitted to them; the pairs seed the loop.

        Returns:
            tuple: The units to remove now (unpruned numbering, for
            :meth:`apply`) and the loop's log.
        """
        scores = self.scores() if scores is None else scores

        def select(target: float) -> Removed:
            return self.select(target, scores)

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
                units = select_ratio(self.groups, scores, ratio,
                                     quanta)
                samples.append(
                    (units, float(measure(self.candidate(model, units)))))
            shares = self.cost.calibrate(samples)
            loop.points += [(predicted(u), 1.0 - m) for u, m in samples]
            calibration = dict(
                shares=[round(v, 4) for v in shares],
                measured=[round(m, 4) for _, m in samples],
                seconds=round(time.perf_counter() - start, 2))
        new, log = loop.run(target, select, predicted,
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
        """A CPU copy of ``model`` (copied to the CPU tensor by tensor, never
        whole on its device) with ``new`` units (unpruned numbering)
        removed too, cut for real, in eval mode; ``model`` and the pruner
        are left as they are."""
        return self.mode.candidate(self, model, new).cpu().eval()

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
        return self.mode.to_current(self, new)

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
        replaced = self.mode.apply(self, model, delta, optimizers, copies)
        if self._importance_state is not None:  # restored from a checkpoint
            state, self._importance_state = self._importance_state, None
            self.importance.load_state_dict(state)
        return replaced

    def small(self, model: nn.Module) -> Tuple[nn.Module, PrunedSpec]:
        """The small model and its spec against the unpruned one: ``model``
        itself (``'physical'``) or a cut copy of it (``'mask'``)."""
        return self.mode.small(self, model)

    def spec(self, model: nn.Module) -> PrunedSpec:
        """The spec of the pruned ``model`` against the unpruned one (in
        ``'mask'`` mode, of the model cut out of a copy)."""
        return self.small(model)[1]

    def state_dict(self) -> dict:
        """Plain data: the unpruned comb result, the removed units, the
        mode and the importance state."""
        return dict(
            comb=self.comb.to_dict(),
            removed={str(k): list(v)
                     for k, v in self.removed.items()},
            shrink=self.shrink,
            importance=self.importance.state_dict())

    def load_state_dict(self, state: Mapping) -> Removed:
        """Restore :meth:`state_dict` into a pruner built on the unpruned
        model and the state's comb result.

        Returns:
            dict: The removed units still to :meth:`apply` to the model (and
            its optimizers and copies): all of them in ``'physical'``
            mode, none in ``'mask'`` mode (masks follow at the next
            :meth:`apply`).
        """
        removed = {int(k): [int(u) for u in v]
                   for k, v in state['removed'].items() if len(v)}
        pending = self.mode.restore(self, removed)
        if pending:  # the cut re-indexes the importance: restore it after
            self._importance_state = state.get('importance', {})
        else:
            self.importance.load_state_dict(state.get('importance', {}))
        return pending
