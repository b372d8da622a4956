"""CPDHook: iterative structured pruning inside mmengine training."""
import copy
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.dist import (broadcast_object_list, get_world_size,
                           is_main_process)
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapperDict
from torch import nn

from mmcpd.prune.closed_loop import LatencyLoop, loop_settings
from mmcpd.prune.convert import STATE_KEY, small_checkpoint
from mmcpd.prune.cost import ACT_WEIGHT
from mmcpd.prune.importance import BaseImportance
from mmcpd.prune.optim_state import shrink_optimizer
from mmcpd.prune.pruner import Pruner, check_pruner_args
from mmcpd.prune.schedule import PruneSchedule, check_schedule_args
from mmcpd.prune.selection import Guards
from mmcpd.prune.widths import ROUND_TO, with_quanta
from mmcpd.prune.spec import CHECKPOINT_KEY
from mmcpd.registry import HOOKS, IMPORTANCES, build_own
from .cpd_report import channel_table, plot_history
from .shrink import (ema_students, follow_connectors, refresh_averaged,
                     rewrap)

#: 2: with the pruner's `shrink` mode (1: masks only)
STATE_VERSION = 2


def find_student(model: nn.Module) -> nn.Module:
    """The model that is pruned: the student of a ``DistillWrapper``, or
    the model itself (model wrappers such as DDP are looked through)."""
    from mmcpd.models.distill_wrapper import unwrap_student
    return unwrap_student(model)


def _comb(model, example_inputs, ignore):
    """The verified comb (:func:`mmcpd.comb_model`), looked up at call time
    so that tests can count or replace it."""
    from mmcpd.api import comb_model
    return comb_model(model, example_inputs, ignore=ignore)


def _check_int(name: str, value, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(
            f'`{name}` should be an int >= {low}, but got {value!r}')


class _ClipGradTap:
    """Calls ``read`` right before ``wrapper`` clips its gradients.

    mmengine's ``OptimWrapper.step`` clips and then steps the optimizer;
    ``AmpOptimWrapper.step`` unscales, clips and then lets the GradScaler
    step it. So a ``torch.optim.Optimizer`` step pre-hook sees clipped
    gradients, and there is no hook between unscaling and clipping: this
    wraps ``_clip_grad`` of this one wrapper instance (its class is left
    alone) until :meth:`remove`. ``_clip_grad`` runs once per real step
    (``step`` runs only when ``update_params`` updates), with the
    accumulated gradient under ``accumulative_counts``.
    """

    def __init__(self, wrapper, read):
        self.wrapper = wrapper
        self._previous = vars(wrapper).get('_clip_grad')
        clip = wrapper._clip_grad

        def read_then_clip():
            read()
            clip()

        self._tapped = read_then_clip
        wrapper._clip_grad = read_then_clip

    def remove(self) -> None:
        if vars(self.wrapper).get('_clip_grad') is not self._tapped:
            return  # replaced by someone else since: leave theirs in place
        if self._previous is None:
            del self.wrapper._clip_grad
        else:
            self.wrapper._clip_grad = self._previous


def _tap_clip_grad(wrapper, read) -> Optional[_ClipGradTap]:
    """A :class:`_ClipGradTap` if ``wrapper`` clips gradients, else None."""
    if not getattr(wrapper, 'clip_grad_kwargs', None) or not callable(
            getattr(wrapper, '_clip_grad', None)):
        return None
    return _ClipGradTap(wrapper, read)


@HOOKS.register_module()
class CPDHook(Hook):
    """Prune the (student) model to a target while it trains.

    Every ``interval`` iterations from ``start`` on, the units (channels,
    heads, ...) of the coupled groups found by :func:`mmcpd.comb_model` are
    ranked globally by importance per cost, and the lowest are removed until
    the schedule's fraction of params or FLOPs is gone; the last prune step
    reaches ``target``, and training then goes on with the architecture
    fixed. The algorithm is a :class:`~mmcpd.prune.pruner.Pruner`; the hook
    decides when to call it, logs, and saves and restores its state.

    With ``shrink='physical'`` (the default) the removed units are cut out
    of the student at every prune step, and what depends on its shapes
    follows: the param groups and state of every optimizer, the averaged
    model of an ``EMAHook``, the feature connectors of a
    ``DistillWrapper``, the DDP wrapper (built anew); training runs on the
    small model from then on. With ``shrink='mask'`` they are held at zero
    (with their gradients, optimizer state and norm statistics, also in
    the EMA model) and shapes never change. Both modes remove the same
    units. At the end of training the small model is saved to
    ``work_dir/<deploy_file>`` (with an ``EMAHook``, from the EMA weights
    that validation used). Checkpoints hold the hook's state and the spec;
    on resume the student is cut to the checkpoint's architecture in
    ``after_load_checkpoint``, before the weights are loaded.

    Importance is read from the normal training backward passes, once per
    optimizer step, after AMP unscaling and before gradient clipping (in a
    ``torch.optim.Optimizer`` step pre-hook, or right before the optimizer
    wrapper clips when it has ``clip_grad``), so it costs no extra forward
    or backward and sees one accumulated gradient per step under gradient
    accumulation. Steps with NaN or inf gradients are left out of the
    scores and counted (``importance.skipped_steps``, logged as
    ``cpd_skipped_steps`` at every prune step).

    Args:
        interval (int): Iterations between prune steps.
        target (float): Fraction of the cost to remove, in (0, 1).
        metric (str): The cost: ``'params'``, ``'flops'``, ``'latency'``
            (measured on this machine, see ``latency_table``; ``target=0.5``
            is half the latency) or ``'latency_proxy'`` (FLOPs plus
            ``act_weight`` MACs per activation element a channel writes, see
            :class:`~mmcpd.prune.cost.CostModel`). Defaults to ``'params'``.
        shrink (str): ``'physical'``: cut the removed units out of the
            student at every prune step, with its optimizer state, EMA
            copy, DDP wrapper and distillation connectors, so training
            speeds up as it prunes; ``'mask'``: hold them at zero and cut
            only the deploy copy. Defaults to ``'physical'``.
        importance (str | dict): A score of ``mmcpd.registry.IMPORTANCES``
            by name or config: ``'hessian'``, ``'taylor'``, ``'magnitude'``
            or ``'random'``. Defaults to ``'hessian'``.
        start (int): Iteration from which importance is gathered; the
            first prune step is at ``start + interval``. Defaults to 0.
        schedule (str): ``'linear'`` or ``'cubic'``. Defaults to
            ``'linear'``.
        end (int, optional): Iteration of the last prune step.
        num_steps (int, optional): Number of prune steps. When neither
            ``end`` nor ``num_steps`` is given, the target is reached at
            half of the training iterations.
        min_channels (int): Channels every group keeps at least. Defaults
            to 1.
        max_ratio (float): Largest fraction of a group's channels removed,
            in (0, 1]. Defaults to 0.9.
        round_to (int): Channel block of the width rule
            (:mod:`mmcpd.prune.widths`): pruned groups keep a multiple of
            this many channels (grouped convolutions per group); 1 leaves
            widths free. Defaults to ``ROUND_TO`` (8).
        rank_by (str, optional): The cost that ranks units (importance per
            cost saved) if not ``metric``; e.g. ``metric='flops',
            rank_by='latency_proxy'`` removes ``target`` of the FLOPs where
            the memory-bound ops shrink too. Defaults to None.
        act_weight (float): MACs per written activation element in the
            ``'latency_proxy'`` cost. Defaults to 2048.
        latency_table (dict, optional): For ``'latency'``: the student's
            latency table, or keyword arguments of
            :func:`~mmcpd.deploy.latency_table.latency_table` (e.g.
            ``dict(threads=4, provider='cuda')``) to measure it (or load it
            from the cache) at ``input_shape`` before training. Defaults to
            None (its defaults: this machine's cores, onnxruntime CPU).
        closed_loop (bool | dict): With ``metric='latency'``, steer by the
            *measured* latency: at each prune step, rank 0 exports the
            candidate student and times it interleaved with the unpruned
            one in onnxruntime (:class:`~mmcpd.deploy.meter.LatencyMeter`,
            the table's threads), corrects the table's prediction by what
            it measured so far (:class:`~mmcpd.prune.closed_loop.
            LatencyLoop`), and at the last step re-targets until the
            measured speedup is within ``tol`` of the target (one
            measurement at the other steps); the choice is broadcast.
            True: the defaults (``tol=0.03``, ``rounds=4``, ``runs=50``);
            a dict sets ``tol``, ``rounds``, ``calibrate`` (fractions of
            every group removed uniformly and measured at the first step
            to fit the table, see ``LatencyCost.calibrate``), ``runs``,
            ``warmup``,
            ``threads``, ``provider`` or ``measure`` (a callable, model ->
            latency over the unpruned model's); False: stop at the
            predicted latency. The unpruned model's ONNX is kept in
            ``work_dir/cpd_latency_reference.onnx`` for resuming. Defaults
            to True.
        ignore (Sequence[str]): Module name patterns (``fnmatch``, a pattern
            also covers submodules) whose groups are never pruned; each must
            match a module. Defaults to ().
        input_shape (Sequence[int]): Shape of the example input used to
            comb the model. Defaults to ``(1, 3, 224, 224)``.
        deploy_file (str, optional): File in ``work_dir`` for the deploy
            checkpoint written after training; None to skip. Defaults to
            ``'pruned_deploy.pth'``.
        plot_file (str, optional): PNG in ``work_dir`` plotting params,
            FLOPs and validation metrics; None to skip. Defaults to
            ``'cpd_pruning.png'``.

    Examples:
        >>> custom_hooks = [
        ...     dict(type='CPDHook', interval=100, target=0.5,
        ...          metric='flops', num_steps=10, round_to=8)
        ... ]
    """
    # before EMAHook, which loads its (cut) averaged model in its own
    # `after_load_checkpoint`
    priority = 'ABOVE_NORMAL'

    def __init__(self,
                 interval: int,
                 target: float,
                 metric: str = 'params',
                 shrink: str = 'physical',
                 importance: Union[str, dict] = 'hessian',
                 start: int = 0,
                 schedule: str = 'linear',
                 end: Optional[int] = None,
                 num_steps: Optional[int] = None,
                 min_channels: int = 1,
                 max_ratio: float = 0.9,
                 round_to: int = ROUND_TO,
                 rank_by: Optional[str] = None,
                 act_weight: float = ACT_WEIGHT,
                 latency_table: Optional[dict] = None,
                 closed_loop: Union[bool, dict] = True,
                 ignore: Sequence[str] = (),
                 input_shape: Sequence[int] = (1, 3, 224, 224),
                 deploy_file: Optional[str] = 'pruned_deploy.pth',
                 plot_file: Optional[str] = 'cpd_pruning.png'):
        check_schedule_args(target, interval, start, end, num_steps,
                            schedule)
        check_pruner_args(metric, rank_by, shrink)
        if not isinstance(act_weight, (int, float)) or isinstance(
                act_weight, bool) or act_weight < 0:
            raise ValueError('`act_weight` should be a number >= 0, but got '
                             f'{act_weight!r}')
        if latency_table is not None and not isinstance(latency_table, dict):
            raise ValueError('`latency_table` should be None or a dict (a '
                             'table or its keyword arguments), but got '
                             f'{type(latency_table).__name__}')
        self._loop_settings = loop_settings(closed_loop) \
            if metric == 'latency' else None
        _check_int('min_channels', min_channels, 1)
        _check_int('round_to', round_to, 1)
        if not isinstance(max_ratio, (int, float)) or isinstance(
                max_ratio, bool) or not 0 < max_ratio <= 1:
            raise ValueError(
                f'`max_ratio` should be in (0, 1], but got {max_ratio!r}')
        if isinstance(ignore, str) or not all(
                isinstance(p, str) for p in ignore):
            raise TypeError('`ignore` should be a sequence of module name '
                            f'patterns, but got {ignore!r}')
        if not all(isinstance(s, int) and s > 0 for s in input_shape) \
                or len(input_shape) < 2:
            raise ValueError('`input_shape` should be positive ints like '
                             f'(1, 3, 224, 224), but got {input_shape!r}')
        cfg = dict(type=importance) if isinstance(importance,
                                                  str) else dict(importance)
        if cfg.get('type') not in IMPORTANCES:
            raise KeyError(
                f'`importance` should be one of '
                f'{sorted(IMPORTANCES.module_dict)} (mmcpd.registry.'
                f"IMPORTANCES), but got {cfg.get('type')!r}")
        self.importance: BaseImportance = build_own(IMPORTANCES, cfg)
        # Resume and load_from read mmengine checkpoints with torch's
        # weights_only default: allow exactly the types mmengine writes.
        from mmcpd.utils.checkpoint import add_mmengine_safe_globals
        add_mmengine_safe_globals()

        self.interval = interval
        self.target = float(target)
        self.metric = metric
        self.shrink = shrink
        self.rank_by = rank_by
        self.act_weight = float(act_weight)
        self.latency_table = latency_table
        self.start = start
        self.schedule_kind = schedule
        self.end = end
        self.num_steps = num_steps
        self.guards = Guards(min_channels, float(max_ratio), round_to)
        self.ignore = tuple(ignore)
        self.input_shape = tuple(input_shape)
        self.deploy_file = deploy_file
        self.plot_file = plot_file

        self.pruner: Optional[Pruner] = None
        self.step = 0
        self.history: List[dict] = []
        self.val_history: List[dict] = []
        self.schedule: Optional[PruneSchedule] = None
        self._restored: Optional[dict] = None
        self._handles: List = []
        self._read_in_clip = False
        self._exact = False
        self._norm_ctx = None
        self._runner = None
        self._loop: Optional[LatencyLoop] = None
        self._measure = None
        self._reachable = 1.0

    # ------------------------------------------------------------------
    # setup
    def before_train(self, runner) -> None:
        # a plain Runner ignores `distill` / `cpd`: fail, do not fall back
        from mmcpd.apis.config_transform import check_cpd_fields
        check_cpd_fields(runner)
        self._runner = runner
        student = find_student(runner.model)
        self.student = student
        self.student_prefix = self._prefix(runner.model, student)
        self._check_ignore(student)
        state = self._restored
        if self.pruner is None:
            comb = self._trace(student)
            for warning in getattr(comb, 'warnings', ()):
                runner.logger.warning(f'CPDHook comb: {warning}')
            self.pruner = self._build_pruner(student, comb, self.shrink)
        if not self.groups:
            raise RuntimeError(
                f'CPDHook found no prunable group in '
                f'{type(student).__name__} (ignore={self.ignore!r}); see '
                'the comb warnings above')
        reachable = self.pruner.reachable(self.target, self.ignore)
        self._reachable = reachable
        self._start_loop(runner, student, state)
        self.schedule = self._build_schedule(runner)
        if state is not None:
            self.step = int(state['step'])
            self.history = list(state.get('history', []))
            self.val_history = list(state.get('val_history', []))
            self._restored = None
        self._register_optimizer_hooks(runner)
        if self.pruner.shrink == 'mask':
            self._refresh_masks(runner, {})
        if not self.history:
            self.history.append(self._record(runner.iter))
        runner.logger.info(
            f'CPDHook: {len(self.groups)} prunable groups of '
            f'{len(self.comb_result.groups)}; {self.schedule.num_steps} '
            f'prune steps every {self.interval} iters from iter '
            f'{self.start} to {self.schedule.end}, to remove '
            f'{self.target:.0%} of the {self.metric} (at most '
            f'{reachable:.0%} possible), shrink={self.pruner.shrink!r}')

    def _start_loop(self, runner, student: nn.Module,
                    state: Optional[dict]) -> None:
        """The closed loop's state on every rank and its meter on rank 0
        (the unpruned student exported once, or read back on resume)."""
        if self._loop_settings is None:
            return
        loop_kw, meter_kw = self._loop_settings
        state = state or {}
        self._loop = LatencyLoop(**loop_kw,
                                 points=state.get('latency_points', ()))
        if 'latency_calibration' in state:
            self.cost.calibration = state['latency_calibration']
        if not is_main_process():
            return
        from mmcpd.deploy.meter import check_onnxruntime, meter_for
        if 'measure' not in meter_kw:
            check_onnxruntime('CPDHook `closed_loop`')
        path = osp.join(runner.work_dir, 'cpd_latency_reference.onnx')
        reference = None if self.removed else student
        if reference is None and not osp.exists(path) \
                and 'measure' not in meter_kw:
            runner.logger.warning(
                f'CPDHook: {path} (the unpruned model, for the closed '
                'latency loop) is missing on resume: the remaining steps '
                'stop at the predicted latency')
            self._loop = None
            return
        table = dict(machine=getattr(self.cost, 'machine', {}))
        self._measure = meter_for(reference, torch.randn(self.input_shape),
                                  meter_kw, table, reference_onnx=path)

    def _build_pruner(self, student: nn.Module, comb, shrink: str) -> Pruner:
        table = self._latency_table(student) if 'latency' in (
            self.metric, self.rank_by) else None
        # the width rule's multiples, from the unpruned student
        guards = with_quanta(self.guards, student, comb.prunable)
        return Pruner(student, comb, self.importance, self.metric, guards,
                      self.rank_by, self.act_weight, shrink,
                      latency_table=table)

    # what the pruner holds, under the names the hook always had
    @property
    def comb_result(self):
        """The comb result of the unpruned student."""
        return None if self.pruner is None else self.pruner.comb

    @property
    def groups(self) -> List:
        return [] if self.pruner is None else self.pruner.groups

    @property
    def removed(self) -> Dict[int, List[int]]:
        """Removed units by group id, in the unpruned numbering."""
        return {} if self.pruner is None else self.pruner.removed

    @property
    def params_cost(self):
        return self.pruner.params_cost

    @property
    def flops_cost(self):
        return self.pruner.flops_cost

    @property
    def cost(self):
        return self.pruner.cost

    @property
    def rank_cost(self):
        return self.pruner.rank_cost

    def _trace(self, student: nn.Module):
        param = next(student.parameters())
        inputs = torch.randn(self.input_shape, device=param.device)
        was_training = student.training
        student.eval()
        try:
            return _comb(student, inputs, self.ignore)
        except Exception as err:
            raise RuntimeError(
                f'CPDHook cannot comb {type(student).__name__} with an '
                f'input of `input_shape`={self.input_shape}: {err}') from err
        finally:
            student.train(was_training)

    def _latency_table(self, student: nn.Module) -> dict:
        """The student's latency table (given, cached or measured on a
        CPU copy at ``input_shape``)."""
        from mmcpd.deploy.latency_table import is_table, table_for
        if is_table(self.latency_table):
            return self.latency_table
        box = [None]
        if is_main_process():  # one machine's numbers, timed without rivals
            box[0] = table_for(
                copy.deepcopy(student).cpu(), torch.randn(self.input_shape),
                self.latency_table)
        if get_world_size() > 1:
            broadcast_object_list(box, src=0)
        return box[0]

    def _build_schedule(self, runner) -> PruneSchedule:
        end, num_steps = self.end, self.num_steps
        if end is None and num_steps is None:
            end = max(runner.max_iters // 2, self.start + self.interval)
        return PruneSchedule(self.target, self.interval, self.start, end,
                             num_steps, self.schedule_kind)

    @staticmethod
    def _prefix(model: nn.Module, student: nn.Module) -> str:
        model = model.module if is_model_wrapper(model) else model
        for name, module in model.named_modules():
            if module is student:
                return name + '.' if name else ''
        return ''

    def _check_ignore(self, student: nn.Module) -> None:
        from mmcpd.comb.resolve import check_ignore
        check_ignore(student, self.ignore)

    # ------------------------------------------------------------------
    # every step
    def _register_optimizer_hooks(self, runner) -> None:
        self._remove_optimizer_hooks()
        wrappers = list(runner.optim_wrapper.values()) if isinstance(
            runner.optim_wrapper, OptimWrapperDict) else [runner.optim_wrapper]
        self._optimizers = [w.optimizer for w in wrappers]
        for optimizer in self._optimizers:
            self._handles.append(
                optimizer.register_step_pre_hook(self._before_step))
            self._handles.append(
                optimizer.register_step_post_hook(self._after_step))
        # Importance is read at the steps of the first wrapper, where the
        # gradients are unscaled (AMP) and not yet clipped: in its optimizer
        # step pre-hook, or right before it clips when `clip_grad` is set.
        tap = _tap_clip_grad(wrappers[0], self._read_grads)
        self._read_in_clip = tap is not None
        if tap is not None:
            self._handles.append(tap)

    def _remove_optimizer_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _gathering(self) -> bool:
        return (self.importance.uses_grad and self._runner is not None
                and self._runner.iter >= self.start
                and self.step < self.schedule.num_steps)

    def _read_grads(self) -> None:
        if self._gathering():
            self.importance.accumulate()

    def _before_step(self, optimizer, args, kwargs) -> None:
        if optimizer is not self._optimizers[0]:
            return
        dead = self.pruner.dead
        if dead:
            dead.zero_grads()
        if not self._read_in_clip:
            self._read_grads()

    def _after_step(self, optimizer, args, kwargs) -> None:
        # Gradients were zeroed before the step, so SGD / Adam / AdamW
        # leave the optimizer state of removed entries at zero (it is zeroed
        # at each prune step); re-zeroing the weights also covers any
        # optimizer that moves weights without a gradient.
        dead = self.pruner.dead
        if dead:
            dead.zero_tensors()

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        self._exit_norms()
        step = self.schedule.step_at(runner.iter + 1)
        if step is None or step <= self.step:
            return
        self._prune(runner, step)

    def _prune(self, runner, step: int) -> None:
        goal = self.schedule.target_at(step)
        loop_log = None
        if self._loop is None:
            new = self.pruner.step(goal)
        elif self._measure is not None:  # rank 0 measures
            rounds = None if step == self.schedule.num_steps else 1
            new, loop_log = self.pruner.measured_step(
                self.student, goal, self._measure, self._loop, rounds,
                self._reachable)
        else:
            self.importance.reset()
            new = {}
        if get_world_size() > 1:  # the same choice on every rank
            box = [new, loop_log]
            broadcast_object_list(box, src=0)
            new, loop_log = box
        self.step = step
        self._refresh_masks(runner, new)
        record = self._record(runner.iter + 1, len(new), loop_log)
        self.history.append(record)
        for key in ('sparsity', 'params', 'flops', 'groups_pruned'):
            if record.get(key) is not None:
                runner.message_hub.update_scalar(f'train/cpd_{key}',
                                                 record[key])
        skipped = ''
        if self.importance.uses_grad:
            count = self.importance.skipped_steps
            runner.message_hub.update_scalar('train/cpd_skipped_steps',
                                             count)
            skipped = f', {count} steps with NaN/inf gradients left out of ' \
                'the importance so far'
        flops = record.get('flops_ratio')
        if loop_log is not None:
            runner.message_hub.update_scalar('train/cpd_latency_ratio',
                                             loop_log['ratio'])
            ratio = loop_log['ratio']
            predicted = record['predicted_latency_ratio']
            runner.logger.info(
                f'CPDHook closed loop: measured latency {ratio:.3f} of the '
                f'unpruned model (goal {1 - goal:.3f}, predicted '
                f"{predicted:.3f}) after {len(loop_log['rounds'])} "
                f"measurements in {loop_log['seconds']:.1f} s (predicted -> "
                'measured: ' + ', '.join(
                    f"{r['predicted']:.3f} -> {r['measured']:.3f}"
                    for r in loop_log['rounds']) + ')')
        runner.logger.info(
            f'CPDHook step {step}/{self.schedule.num_steps} at iter '
            f'{runner.iter + 1}: {self.metric} removed '
            f'{record["sparsity"]:.1%} (step target '
            f'{self.schedule.target_at(step):.1%}), params '
            f'{record["params"]:.0f} ({record["params_ratio"]:.1%})' +
            (f', FLOPs {record["flops"]:.3g} ({flops:.1%})'
             if flops is not None else '') +
            f', {len(new)} groups pruned this step{skipped}')

    def _record(self, it: int, groups_pruned: int = 0,
                loop_log: Optional[dict] = None) -> dict:
        params = self.params_cost.total(self.removed)
        full_params = self.params_cost.total()
        record = dict(
            iter=int(it),
            step=int(self.step),
            params=float(params),
            params_ratio=params / full_params,
            groups_pruned=int(groups_pruned))
        if self.flops_cost is not None:
            flops = self.flops_cost.total(self.removed)
            record.update(flops=float(flops),
                          flops_ratio=flops / self.flops_cost.total())
        ratio = record['params_ratio'] if self.metric == 'params' \
            else record.get('flops_ratio')
        if self.metric == 'latency':
            ratio = self.cost.total(self.removed) / self.cost.total()
            record['predicted_latency_ratio'] = float(ratio)
            if loop_log is not None:
                ratio = record['latency_ratio'] = float(loop_log['ratio'])
        record['sparsity'] = 1.0 - ratio
        return record

    def _refresh_masks(self, runner, new: Dict[int, List[int]]) -> None:
        """Remove ``new`` units (unpruned numbering) from the student, its
        optimizers and its EMA copies: cut out, the connectors of a
        distillation wrapper following and DDP wrapped anew
        (``'physical'``), or held at zero (``'mask'``)."""
        optimizers = self._student_optimizers(runner)
        copies = [m for m, _ in self._ema_students(runner)]
        wrapper = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        connectors = follow_connectors(wrapper, self.pruner, new)
        self.pruner.apply(self.student, new, optimizers, copies)
        if self.pruner.shrink == 'mask':
            self._activate_exact_norms()
            return
        if not new:
            return
        replaced = connectors()
        for optimizer in optimizers:
            shrink_optimizer(optimizer, replaced)
        refresh_averaged(runner)
        rewrap(runner)

    @staticmethod
    def _student_optimizers(runner) -> List:
        from mmengine.optim import OptimWrapper
        wrapper = getattr(runner, 'optim_wrapper', None)
        if isinstance(wrapper, OptimWrapperDict):
            return [w.optimizer for w in wrapper.values()]
        if isinstance(wrapper, OptimWrapper):
            return [wrapper.optimizer]
        return []

    def _ema_students(self, runner) -> List[tuple]:
        """The student's copies in the averaged models of EMA hooks, each
        with whether its buffers are averaged too."""
        return ema_students(runner, self.student_prefix)

    @torch.no_grad()
    def _deploy_source(self, runner) -> nn.Module:
        """The student as validation sees it: with an EMAHook, the EMA
        parameters (and buffers, if averaged) in a copy of the student."""
        ema = self._ema_students(runner)
        if not ema:
            return self.student
        averaged, with_buffers = ema[0]
        model = copy.deepcopy(self.student)
        pairs = [(model.parameters(), averaged.parameters())]
        if with_buffers:
            pairs.append((model.buffers(), averaged.buffers()))
        for mine, theirs in pairs:
            for a, b in zip(mine, theirs):
                a.copy_(b)
        return model

    def _activate_exact_norms(self) -> None:
        """Make masked LayerNorm / GroupNorm count kept channels only."""
        from mmcpd.prune.mask import kept_channels
        self._exact = bool(
            self.removed and kept_channels(self.comb_result, self.removed))

    def _enter_norms(self) -> None:
        # Around whole iterations rather than the student's forward, since
        # a distillation wrapper may call the student's methods directly.
        if not self._exact or self._norm_ctx is not None:
            return
        from mmcpd.prune.mask import exact_norms
        self._norm_ctx = exact_norms(self.student, self.comb_result,
                                     self.removed)
        self._norm_ctx.__enter__()

    def _exit_norms(self) -> None:
        if self._norm_ctx is not None:
            ctx, self._norm_ctx = self._norm_ctx, None
            ctx.__exit__(None, None, None)

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        self._enter_norms()

    def before_val_iter(self, runner, batch_idx: int,
                        data_batch=None) -> None:
        self._enter_norms()

    def after_val_iter(self, runner, batch_idx: int, data_batch=None,
                       outputs=None) -> None:
        self._exit_norms()

    before_test_iter = before_val_iter
    after_test_iter = after_val_iter

    # ------------------------------------------------------------------
    # validation, end of training
    def after_val_epoch(self, runner, metrics=None) -> None:
        if not metrics:
            return
        entry = {'iter': int(runner.iter)}
        for key, value in metrics.items():
            try:
                entry[key] = float(value)
            except (TypeError, ValueError):
                continue
        self.val_history.append(entry)

    def after_train(self, runner) -> None:
        self._remove_optimizer_hooks()
        if self.comb_result is None:
            return
        runner.logger.info('CPDHook: channels kept per group\n' +
                           channel_table(self.groups, self.removed))
        if not is_main_process():
            return
        if self.plot_file:
            path = plot_history(self.history, self.val_history,
                                osp.join(runner.work_dir, self.plot_file))
            runner.logger.info(f'CPDHook: plot saved to {path}')
        if self.deploy_file:
            path = osp.join(runner.work_dir, self.deploy_file)
            # With an EMAHook, the EMA weights that validation saw.
            ema = bool(self._ema_students(runner))
            small, spec = self.pruner.small(self._deploy_source(runner))
            ckpt = small_checkpoint(
                small, spec,
                dict(self.history[-1], iter=int(runner.iter), ema=ema))
            torch.save(ckpt, path)
            runner.logger.info(f'CPDHook: pruned model saved to {path}' +
                               (' (EMA weights)' if ema else ''))

    # ------------------------------------------------------------------
    # checkpoints
    def state_dict(self) -> dict:
        """Everything needed to resume pruning (plain, weights_only-safe):
        the pruner's state (unpruned comb result, removed units, mode,
        importance) and the hook's (step, schedule, history)."""
        state = self.pruner.state_dict()
        state.update(
            version=STATE_VERSION,
            step=int(self.step),
            schedule=self.schedule.to_dict(),
            history=list(self.history),
            val_history=list(self.val_history),
            student_prefix=self.student_prefix)
        if self._loop is not None:
            state['latency_points'] = [list(p) for p in self._loop.points]
            state['latency_calibration'] = self.cost.calibration
        return state

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.comb_result is None:
            return
        checkpoint[STATE_KEY] = self.state_dict()
        checkpoint[CHECKPOINT_KEY] = self.pruner.spec(self.student).to_dict()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Restore the pruner; in ``'physical'`` mode, cut the student (and
        re-point its optimizers, cut its EMA copies, wrap DDP anew) to the
        checkpoint's architecture before the runner loads its weights."""
        state = checkpoint.get(STATE_KEY)
        if state is None:
            return
        if state.get('version', STATE_VERSION) > STATE_VERSION:
            raise ValueError(
                f'the CPDHook state in the checkpoint has version '
                f"{state['version']}, newer than this mmcpd reads "
                f'({STATE_VERSION})')
        from mmcpd.comb import CombResult
        shrink = state.get('shrink', 'mask')
        if shrink != self.shrink:
            runner.logger.warning(
                f"CPDHook: the checkpoint was pruned with shrink={shrink!r}"
                f', which this run goes on with (shrink={self.shrink!r} '
                'applies to new runs)')
        self._runner = runner
        self.student = find_student(runner.model)
        self.student_prefix = self._prefix(runner.model, self.student)
        self.pruner = self._build_pruner(self.student,
                                         CombResult.from_dict(state['comb']),
                                         shrink)
        if shrink == 'mask':
            self.pruner.load_state_dict(state)
        else:
            new = {int(k): v for k, v in state['removed'].items()}
            self._refresh_masks(runner, new)
            self.importance.load_state_dict(state.get('importance', {}))
        self._restored = state
