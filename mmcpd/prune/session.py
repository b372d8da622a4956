"""A prune session: the algorithm of a CPD run, free of any framework.

:class:`PruneSession` owns what a run decides and remembers: the
:class:`~mmcpd.prune.pruner.Pruner` (comb result, importance, costs,
removed units), the :class:`~mmcpd.prune.schedule.PruneSchedule`, the
window in which gradients are gathered, the closed latency loop and its
cost calibration, and the history of prune steps and validation metrics.
A training loop calls it (as mmengine's ``EMAHook`` calls its averaged
model, and as timm's schedulers take the step count as an argument):

- :meth:`observe` once per optimizer step, after the backward;
- :meth:`step` with the iterations done: the units to remove now, or None;
- :meth:`apply` to cut them (the caller follows the cut through whatever
  else holds the model's tensors), then :meth:`record`;
- :meth:`state_dict` / :meth:`load_state_dict`, in which every object
  nests its own state.

It imports neither mmengine nor a runtime: the latency table and the
latency measurement are given (``table``, ``measure``), and so is the
process group (:class:`Sync`, ``torch.distributed`` when initialised).
``CPDHook`` (:mod:`mmcpd.engine.hooks`) and ``mmcpd.prune_model`` build the
same session.
"""
from contextlib import nullcontext
from dataclasses import dataclass
from typing import (Any, Callable, ContextManager, Dict, List, Mapping,
                    Optional, Sequence, Tuple)

import torch
from torch import nn

from mmcpd.comb import CombResult
from mmcpd.comb.group import Removed
from mmcpd.prune.closed_loop import LatencyLoop
from mmcpd.prune.importance import BaseImportance
from mmcpd.prune.pruner import Pruner
from mmcpd.prune.schedule import END_FRACTION, PruneSchedule
from mmcpd.prune.selection import select_ratio
from mmcpd.prune.settings import PruneSettings
from mmcpd.prune.spec import CHECKPOINT_KEY, PrunedSpec
from mmcpd.prune.surgery.mask import exact_norms
from mmcpd.prune.surgery.physical import Replaced
from mmcpd.prune.widths import with_quanta

#: 3: nested, one key per owner (2: one flat dict, 1: masks only).
STATE_VERSION = 3


class Sync:
    """The process group a session decides in: rank 0 chooses, the others
    receive its choice. Plain ``torch.distributed``; one process when it is
    not initialised."""

    @staticmethod
    def world_size() -> int:
        dist = torch.distributed
        return dist.get_world_size() if dist.is_available() and \
            dist.is_initialized() else 1

    def is_main(self) -> bool:
        dist = torch.distributed
        return self.world_size() == 1 or dist.get_rank() == 0

    def broadcast(self, obj: Any) -> Any:
        """``obj`` of rank 0, on every rank."""
        if self.world_size() == 1:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]


@dataclass
class PruneStep:
    """What :meth:`PruneSession.step` decided: the step's number, its goal
    (fraction of the metric removed), the units to remove now (unpruned
    numbering) and the closed loop's log (None without one)."""
    step: int
    goal: float
    new: Dict[int, List[int]]
    loop_log: Optional[dict] = None


class PruneSession:
    """Prunes one model to ``settings.target`` over a schedule.

    Args:
        settings (PruneSettings): What to prune, how much and how.
        schedule (dict, optional): :class:`PruneSchedule` arguments other
            than ``target`` (``interval``, ``start``, ``end``,
            ``num_steps``, ``kind``); with neither ``end`` nor
            ``num_steps``, :meth:`begin` ends pruning at ``END_FRACTION``
            (a quarter) of the iterations. None for one-shot pruning
            (:meth:`prune_to`).
        sync (Sync, optional): The process group. Defaults to
            ``torch.distributed`` when initialised.

    Examples:
        >>> session = PruneSession(PruneSettings(target=0.5, metric='flops'),
        ...                        dict(interval=100, num_steps=5))
        >>> session.start(model, mmcpd.comb_model(model, x))
        >>> session.begin(max_iters=1000)
        >>> for it in range(1000):
        ...     loss.backward(); session.observe(it); optimizer.step()
        ...     due = session.step(it + 1)
        ...     if due is not None:
        ...         session.apply(due.new, [optimizer])
        ...         session.record(it + 1, due)
    """

    def __init__(self,
                 settings: PruneSettings,
                 schedule: Optional[dict] = None,
                 sync: Optional[Sync] = None):
        self.settings = settings
        self.schedule_args = dict(schedule or {})
        self.sync = sync or Sync()
        self.importance: BaseImportance = settings.build_importance()
        self.pruner: Optional[Pruner] = None
        self.model: Optional[nn.Module] = None
        self.schedule: Optional[PruneSchedule] = None
        self.loop: Optional[LatencyLoop] = None
        self.measure: Optional[Callable[[nn.Module], float]] = None
        self.reachable = 1.0
        self.step_count = 0
        self.history: List[dict] = []
        self.val_history: List[dict] = []

    # ------------------------------------------------------------------
    # building
    @property
    def started(self) -> bool:
        return self.pruner is not None

    def start(self,
              model: nn.Module,
              comb: CombResult,
              table: Optional[dict] = None,
              shrink: Optional[str] = None) -> None:
        """Build the pruner of ``model`` (unpruned) from its comb result.

        Args:
            model (nn.Module): The model to prune, at its unpruned width.
            comb (CombResult): Its (verified) comb result.
            table (dict, optional): Its latency table, when
                ``settings.needs_table``.
            shrink (str, optional): The shrink mode, if not the settings'
                (a checkpoint's). Defaults to None.
        """
        settings = self.settings
        if settings.needs_table and table is None:
            raise ValueError(
                f'metric={settings.metric!r}, rank_by={settings.rank_by!r} '
                'need the latency table of the model (`table`)')
        # the width rule's multiples, from the unpruned model
        guards = with_quanta(settings.guards, model, comb.prunable, table)
        self.model = model
        self.pruner = Pruner(
            model, comb, self.importance, settings.metric, guards,
            settings.rank_by, settings.act_weight, shrink or settings.shrink,
            latency_table=table)
        loop = settings.loop
        if loop is not None and self.loop is None:
            self.loop = LatencyLoop(**loop[0])

    def begin(self,
              max_iters: Optional[int] = None,
              measure: Optional[Callable[[nn.Module], float]] = None
              ) -> float:
        """Check the target, build the schedule, keep ``measure`` (the
        closed loop's, on the rank that measures); the largest removable
        fraction of the cost (a ValueError naming the limit when the target
        exceeds it)."""
        settings = self.settings
        self.reachable = self.pruner.reachable(settings.target,
                                               settings.ignore)
        self.measure = measure
        if self.schedule_args or max_iters is not None:
            args = dict(self.schedule_args)
            start, interval = args.get('start', 0), args['interval']
            if args.get('end') is None and args.get('num_steps') is None:
                if max_iters is None:
                    raise ValueError(
                        'the schedule has neither `end` nor `num_steps`: '
                        'give `max_iters` (pruning ends at '
                        f'{END_FRACTION:g} of it)')
                args['end'] = max(int(max_iters * END_FRACTION),
                                  start + interval)
            self.schedule = PruneSchedule(settings.target, **args)
        return self.reachable

    # ------------------------------------------------------------------
    # what the pruner holds
    @property
    def comb(self) -> Optional[CombResult]:
        """The comb result of the unpruned model."""
        return None if self.pruner is None else self.pruner.comb

    @property
    def groups(self) -> list:
        return [] if self.pruner is None else self.pruner.groups

    @property
    def removed(self) -> Dict[int, List[int]]:
        """Removed units by group id, in the unpruned numbering."""
        return {} if self.pruner is None else self.pruner.removed

    @property
    def shrink(self) -> str:
        return self.pruner.shrink if self.pruner else self.settings.shrink

    @property
    def finished(self) -> bool:
        """Whether the last prune step is done."""
        return self.step_count >= self.schedule.num_steps

    # ------------------------------------------------------------------
    # every optimizer step
    def gathering(self, iteration: int) -> bool:
        """Whether the gradients of ``iteration`` (0-based) count."""
        return (self.importance.uses_grad and self.schedule is not None
                and iteration >= self.schedule.start and not self.finished)

    def observe(self, iteration: int) -> None:
        """Read the gradients of ``iteration`` into the importance (call
        once per optimizer step, after unscaling, before clipping)."""
        if self.gathering(iteration):
            self.importance.accumulate()

    def before_update(self) -> None:
        """Before the optimizer steps: zero the gradients of units held at
        zero (``'mask'``)."""
        if self.pruner.dead:
            self.pruner.dead.zero_grads()

    def after_update(self) -> None:
        """After the optimizer step: re-zero units held at zero (any
        optimizer that moves weights without a gradient)."""
        if self.pruner.dead:
            self.pruner.dead.zero_tensors()

    # ------------------------------------------------------------------
    # prune steps
    def step(self, iteration: int) -> Optional[PruneStep]:
        """The units to remove after ``iteration`` iterations are done, or
        None when no prune step is due. Every rank calls it: all ranks
        average the scores, rank 0 selects (and measures, with the closed
        loop) and every rank gets its choice."""
        number = self.schedule.step_at(iteration)
        if number is None or number <= self.step_count:
            return None
        goal = self.schedule.target_at(number)
        last = number == self.schedule.num_steps
        new, loop_log = self._choose(goal, None if last else 1)
        self.step_count = number
        return PruneStep(number, goal, new, loop_log)

    def prune_to(self, target: float,
                 ratio: Optional[float] = None) -> PruneStep:
        """One step to ``target`` of the metric now (one-shot pruning), or
        ``ratio`` of every group's units (uniform widths)."""
        if ratio is not None:
            guards = self.pruner.guards
            new = select_ratio(self.groups, self.pruner.scores(), ratio,
                               guards.quanta)
            self.importance.reset()
            return PruneStep(0, ratio, new)
        new, loop_log = self._choose(target, None)
        return PruneStep(0, target, new, loop_log)

    def _choose(self, goal: float,
                rounds: Optional[int]) -> Tuple[Dict[int, List[int]],
                                                Optional[dict]]:
        pruner = self.pruner
        scores = pruner.scores()  # a collective: on every rank
        new, loop_log = {}, None
        if self.sync.is_main():
            if self.loop is not None and self.measure is not None:
                new, loop_log = pruner.measured_step(
                    self.model, goal, self.measure, self.loop, rounds,
                    self.reachable, scores=scores)
            else:
                new = pruner.select(goal, scores)
        new, loop_log = self.sync.broadcast((new, loop_log))
        self.importance.reset()
        return new, loop_log

    def apply(self,
              new: Mapping[int, Sequence[int]],
              optimizers: Sequence[torch.optim.Optimizer] = (),
              copies: Sequence[nn.Module] = ()) -> Replaced:
        """Remove ``new`` units (unpruned numbering) from the model, its
        optimizers and copies (see :meth:`Pruner.apply`)."""
        return self.pruner.apply(self.model, new, optimizers, copies)

    def record(self, iteration: int,
               done: Optional[PruneStep] = None) -> dict:
        """Add the model's size after ``iteration`` iterations (and what
        ``done`` removed) to the history; the entry."""
        pruner = self.pruner
        removed = pruner.removed
        params_cost, flops_cost = pruner.params_cost, pruner.flops_cost
        params = params_cost.total(removed)
        record = dict(
            iter=int(iteration),
            step=int(self.step_count),
            params=float(params),
            params_ratio=params / params_cost.total(),
            groups_pruned=len(done.new) if done else 0)
        if flops_cost is not None:
            flops = flops_cost.total(removed)
            record.update(flops=float(flops),
                          flops_ratio=flops / flops_cost.total())
        metric = self.settings.metric
        ratio = record['params_ratio'] if metric == 'params' \
            else record.get('flops_ratio')
        if metric == 'latency':
            ratio = pruner.cost.total(removed) / pruner.cost.total()
            record['predicted_latency_ratio'] = float(ratio)
            if done is not None and done.loop_log is not None:
                ratio = record['latency_ratio'] = float(
                    done.loop_log['ratio'])
        record['sparsity'] = 1.0 - ratio
        self.history.append(record)
        return record

    def record_val(self, iteration: int, metrics: Mapping) -> None:
        """Keep the numeric validation ``metrics`` of ``iteration``."""
        entry = {'iter': int(iteration)}
        for key, value in metrics.items():
            try:
                entry[key] = float(value)
            except (TypeError, ValueError):
                continue
        self.val_history.append(entry)

    def norms(self, model: Optional[nn.Module] = None) -> ContextManager:
        """While the model runs: norms over channels count only the kept
        ones (``'mask'`` with removed channels), else nothing."""
        pruner = self.pruner
        if pruner is None or not pruner.exact_norms:
            return nullcontext()
        return exact_norms(model or self.model, pruner.comb, pruner.removed)

    def small(self, model: Optional[nn.Module] = None
              ) -> Tuple[nn.Module, PrunedSpec]:
        """The small model (of ``model``, e.g. an EMA copy, or the pruned
        one) and its spec."""
        return self.pruner.small(model or self.model)

    def spec(self) -> PrunedSpec:
        """The spec of the pruned model against the unpruned one."""
        return self.pruner.spec(self.model)

    # ------------------------------------------------------------------
    # checkpoints
    def state_dict(self) -> dict:
        """Plain, weights_only-safe state; each object owns its key."""
        state = dict(
            pruner=self.pruner.state_dict(),
            step=int(self.step_count),
            history=list(self.history),
            val_history=list(self.val_history))
        if self.schedule is not None:
            state['schedule'] = self.schedule.to_dict()
        if self.loop is not None:
            state['loop'] = dict(points=[list(p) for p in self.loop.points])
            state['cost'] = dict(calibration=self.pruner.cost.calibration)
        return state

    def load_state_dict(self, state: Mapping, model: nn.Module,
                        table: Optional[dict] = None) -> Removed:
        """Restore :meth:`state_dict` on ``model`` as built (unpruned).

        Returns:
            dict: The removed units to :meth:`apply` (with the optimizers
            and copies) to cut ``model`` to the checkpoint's architecture;
            empty in ``'mask'`` mode.
        """
        pruner_state = state['pruner']
        self.start(model, CombResult.from_dict(pruner_state['comb']), table,
                   pruner_state.get('shrink', 'mask'))
        pending = self.pruner.load_state_dict(pruner_state)
        self.step_count = int(state.get('step', 0))
        self.history = list(state.get('history', []))
        self.val_history = list(state.get('val_history', []))
        if self.loop is not None:
            self.loop.points = [tuple(p) for p in state.get('loop', {}).get(
                'points', ())]
            calibration = state.get('cost', {}).get('calibration')
            if calibration is not None:
                self.pruner.cost.calibration = calibration
        return pending


# ----------------------------------------------------------------------
# the session's state in a training checkpoint
#: Key of the CPD state in training checkpoints.
STATE_KEY = 'cpd_hook'


def pack_state(session: PruneSession, student_prefix: str = '') -> dict:
    """The checkpoint entry of a session: ``{'version', 'session',
    'student_prefix'}`` (where the pruned model sits in the saved one)."""
    return dict(version=STATE_VERSION, session=session.state_dict(),
                student_prefix=student_prefix)


def unpack_state(entry: Mapping) -> Tuple[dict, str]:
    """The session state and the student prefix of a checkpoint entry,
    from this release's layout or an earlier one's (one flat dict)."""
    version = int(entry.get('version', 2))
    if version > STATE_VERSION:
        raise ValueError(
            f'the CPD state in the checkpoint has version {version}, newer '
            f'than this mmcpd reads ({STATE_VERSION})')
    if version == STATE_VERSION:
        return dict(entry['session']), entry.get('student_prefix', '')
    # versions 1 and 2: the hook's fields and the pruner's in one dict
    state = dict(
        pruner=dict(comb=entry['comb'], removed=entry['removed'],
                    shrink=entry.get('shrink', 'mask'),
                    importance=entry.get('importance', {})),
        step=entry.get('step', 0),
        history=entry.get('history', []),
        val_history=entry.get('val_history', []))
    if 'schedule' in entry:
        state['schedule'] = entry['schedule']
    if 'latency_points' in entry:
        state['loop'] = dict(points=entry['latency_points'])
    if 'latency_calibration' in entry:
        state['cost'] = dict(calibration=entry['latency_calibration'])
    return state, entry.get('student_prefix', '')


def is_training_checkpoint(checkpoint: Any) -> bool:
    """Whether ``checkpoint`` holds a CPD session (a training checkpoint,
    full-size or cut), not only a pruned model."""
    return isinstance(checkpoint, Mapping) and STATE_KEY in checkpoint


def is_deploy_checkpoint(checkpoint: Any) -> bool:
    """Whether ``checkpoint`` holds a pruned model (its spec) and no CPD
    session: a deploy checkpoint, loaded by resizing the model first."""
    return isinstance(checkpoint, Mapping) and \
        CHECKPOINT_KEY in checkpoint and STATE_KEY not in checkpoint


def removed_units(state: Mapping) -> Dict[int, List[int]]:
    """Removed units by (int) group id, of a session state."""
    return {int(k): [int(u) for u in v]
            for k, v in state['pruner']['removed'].items()}


def comb_of(state: Mapping) -> CombResult:
    """The unpruned comb result of a session state."""
    return CombResult.from_dict(state['pruner']['comb'])


def shrink_of(state: Mapping) -> str:
    """The shrink mode a session state was pruned with."""
    return state['pruner'].get('shrink', 'mask')
