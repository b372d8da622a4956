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

from mmcpd.prune.convert import STATE_KEY, deploy_checkpoint, pruned_copy
from mmcpd.prune.cost import ACT_WEIGHT, METRICS, model_cost
from mmcpd.prune.dead import DeadUnits
from mmcpd.prune.importance import BaseImportance
from mmcpd.prune.schedule import PruneSchedule, check_schedule_args
from mmcpd.prune.selection import Guards, check_reachable, select_units
from mmcpd.prune.widths import ROUND_TO, with_quanta
from mmcpd.prune.spec import CHECKPOINT_KEY
from mmcpd.registry import HOOKS, IMPORTANCES
from .cpd_report import channel_table, plot_history

STATE_VERSION = 1


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
    fixed. Removed units are masked (held at zero together with their
    gradients, optimizer state and norm statistics, and in the averaged
    model of an ``EMAHook``), so shapes, the optimizer and DDP stay as they
    are; at the end of training the small model is cut out and saved to
    ``work_dir/<deploy_file>`` (with an ``EMAHook``, from the EMA weights
    that validation used).

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
        metric (str): The cost: ``'params'``, ``'flops'`` or
            ``'latency'`` (FLOPs plus ``act_weight`` MACs per activation
            element a channel writes, see
            :class:`~mmcpd.prune.cost.CostModel`). Defaults to ``'params'``.
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
            rank_by='latency'`` removes ``target`` of the FLOPs where the
            memory-bound ops shrink too. Defaults to None.
        act_weight (float): MACs per written activation element in the
            ``'latency'`` cost. Defaults to 2048.
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
    priority = 'NORMAL'

    def __init__(self,
                 interval: int,
                 target: float,
                 metric: str = 'params',
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
                 ignore: Sequence[str] = (),
                 input_shape: Sequence[int] = (1, 3, 224, 224),
                 deploy_file: Optional[str] = 'pruned_deploy.pth',
                 plot_file: Optional[str] = 'cpd_pruning.png'):
        check_schedule_args(target, interval, start, end, num_steps,
                            schedule)
        if metric not in METRICS:
            raise ValueError(f'`metric` should be one of {METRICS}, but '
                             f'got {metric!r}')
        if rank_by is not None and rank_by not in METRICS:
            raise ValueError(f'`rank_by` should be None or one of '
                             f'{METRICS}, but got {rank_by!r}')
        if not isinstance(act_weight, (int, float)) or isinstance(
                act_weight, bool) or act_weight < 0:
            raise ValueError('`act_weight` should be a number >= 0, but got '
                             f'{act_weight!r}')
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
        self.importance: BaseImportance = IMPORTANCES.build(cfg)
        # Resume and load_from read mmengine checkpoints with torch's
        # weights_only default: allow exactly the types mmengine writes.
        from mmcpd.utils.checkpoint import add_mmengine_safe_globals
        add_mmengine_safe_globals()

        self.interval = interval
        self.target = float(target)
        self.metric = metric
        self.rank_by = rank_by
        self.act_weight = float(act_weight)
        self.start = start
        self.schedule_kind = schedule
        self.end = end
        self.num_steps = num_steps
        self.guards = Guards(min_channels, float(max_ratio), round_to)
        self.ignore = tuple(ignore)
        self.input_shape = tuple(input_shape)
        self.deploy_file = deploy_file
        self.plot_file = plot_file

        self.comb_result = None
        self.rank_cost = None
        self.groups: List = []
        self.removed: Dict[int, List[int]] = {}
        self.step = 0
        self.history: List[dict] = []
        self.val_history: List[dict] = []
        self.schedule: Optional[PruneSchedule] = None
        self._restored: Optional[dict] = None
        self._handles: List = []
        self._read_in_clip = False
        self._dead: Optional[DeadUnits] = None
        self._exact = False
        self._norm_ctx = None
        self._runner = None

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
        if state is not None:
            from mmcpd.comb import CombResult
            self.comb_result = CombResult.from_dict(state['comb'])
        else:
            self.comb_result = self._trace(student)
            for warning in getattr(self.comb_result, 'warnings', ()):
                runner.logger.warning(f'CPDHook comb: {warning}')
        self.groups = list(self.comb_result.prunable)
        self.guards = with_quanta(self.guards, student, self.groups)
        if not self.groups:
            raise RuntimeError(
                f'CPDHook found no prunable group in '
                f'{type(student).__name__} (ignore={self.ignore!r}); see '
                'the comb warnings above')
        macs = getattr(self.comb_result, 'param_macs', None)
        self.params_cost = model_cost(student, self.comb_result, 'params')
        # FLOPs are logged when known; model_cost names what is missing
        # when they are the target
        self.flops_cost = model_cost(student, self.comb_result, 'flops') \
            if macs or self.metric == 'flops' else None
        self.cost = dict(
            params=self.params_cost, flops=self.flops_cost).get(
                self.metric) or model_cost(student, self.comb_result,
                                           self.metric, self.act_weight)
        self.rank_cost = None if self.rank_by in (
            None, self.metric) else model_cost(student, self.comb_result,
                                               self.rank_by, self.act_weight)
        reachable = check_reachable(self.groups, self.cost, self.guards,
                                    self.target, self.ignore)
        self.schedule = self._build_schedule(runner)
        self.importance.setup(student, self.groups)
        if state is not None:
            self.removed = {int(k): list(v)
                            for k, v in state['removed'].items()}
            self.step = int(state['step'])
            self.history = list(state.get('history', []))
            self.val_history = list(state.get('val_history', []))
            self.importance.load_state_dict(state.get('importance', {}))
            self._restored = None
        self._register_optimizer_hooks(runner)
        self._refresh_masks(runner)
        if not self.history:
            self.history.append(self._record(runner.iter))
        runner.logger.info(
            f'CPDHook: {len(self.groups)} prunable groups of '
            f'{len(self.comb_result.groups)}; {self.schedule.num_steps} '
            f'prune steps every {self.interval} iters from iter '
            f'{self.start} to {self.schedule.end}, to remove '
            f'{self.target:.0%} of the {self.metric} (at most '
            f'{reachable:.0%} possible)')

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
        if self._dead:
            self._dead.zero_grads()
        if not self._read_in_clip:
            self._read_grads()

    def _after_step(self, optimizer, args, kwargs) -> None:
        # Gradients were zeroed before the step, so SGD / Adam / AdamW
        # leave the optimizer state of removed entries at zero (it is zeroed
        # at each prune step); re-zeroing the weights also covers any
        # optimizer that moves weights without a gradient.
        if self._dead:
            self._dead.zero_tensors()

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
        scores = self.importance.scores()
        new = select_units(
            self.groups,
            scores,
            self.cost,
            self.removed,
            self.schedule.target_at(step),
            self.guards,
            rank_cost=self.rank_cost)
        if get_world_size() > 1:  # the same choice on every rank
            box = [new]
            broadcast_object_list(box, src=0)
            new = box[0]
        for gid, units in new.items():
            self.removed[gid] = sorted(set(self.removed.get(gid, [])) |
                                       set(units))
        self.step = step
        self.importance.reset()
        self._refresh_masks(runner)
        record = self._record(runner.iter + 1, len(new))
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
        runner.logger.info(
            f'CPDHook step {step}/{self.schedule.num_steps} at iter '
            f'{runner.iter + 1}: {self.metric} removed '
            f'{record["sparsity"]:.1%} (step target '
            f'{self.schedule.target_at(step):.1%}), params '
            f'{record["params"]:.0f} ({record["params_ratio"]:.1%})' +
            (f', FLOPs {record["flops"]:.3g} ({flops:.1%})'
             if flops is not None else '') +
            f', {len(new)} groups pruned this step{skipped}')

    def _record(self, it: int, groups_pruned: int = 0) -> dict:
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
            else record['flops_ratio']
        record['sparsity'] = 1.0 - ratio
        return record

    def _refresh_masks(self, runner) -> None:
        self._dead = DeadUnits(self.student, self.comb_result.groups,
                               self.removed)
        if self._dead:
            self._dead.zero_tensors()
            for optimizer in self._optimizers:
                self._dead.zero_optimizer_state(optimizer)
        for ema, _ in self._ema_students(runner):
            # An average of zeros stays zero: zeroed at each prune step,
            # the EMA copies of removed units stay dead, as the student's.
            DeadUnits(ema, self.comb_result.groups,
                      self.removed).zero_tensors()
        self._activate_exact_norms()

    def _ema_students(self, runner) -> List[tuple]:
        """The student's copies in the averaged models of EMA hooks, each
        with whether its buffers are averaged too.

        mmengine's ``EMAHook`` averages a deep copy of the model
        (``ema_model.module``), swaps its parameters (and buffers, with
        ``update_buffers=True``) in for validation and saves it as the
        checkpoints' ``state_dict``.
        """
        from mmengine.model import BaseAveragedModel
        students = []
        for hook in getattr(runner, 'hooks', ()):
            averaged = getattr(hook, 'ema_model', None)
            if isinstance(averaged, BaseAveragedModel):
                model = averaged.module
                prefix = self.student_prefix.rstrip('.')
                students.append(
                    (model.get_submodule(prefix) if prefix else model,
                     averaged.update_buffers))
        return students

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
            ckpt = deploy_checkpoint(
                self._deploy_source(runner), self.comb_result, self.removed,
                dict(self.history[-1], iter=int(runner.iter), ema=ema))
            torch.save(ckpt, path)
            runner.logger.info(f'CPDHook: pruned model saved to {path}' +
                               (' (EMA weights)' if ema else ''))

    # ------------------------------------------------------------------
    # checkpoints
    def state_dict(self) -> dict:
        """Everything needed to resume pruning (plain, weights_only-safe)."""
        return dict(
            version=STATE_VERSION,
            comb=self.comb_result.to_dict(),
            removed={str(k): list(v)
                     for k, v in self.removed.items()},
            step=int(self.step),
            schedule=self.schedule.to_dict(),
            importance=self.importance.state_dict(),
            history=list(self.history),
            val_history=list(self.val_history),
            student_prefix=self.student_prefix)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.comb_result is None:
            return
        checkpoint[STATE_KEY] = self.state_dict()
        _, spec = pruned_copy(self.student, self.comb_result, self.removed)
        checkpoint[CHECKPOINT_KEY] = spec.to_dict()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get(STATE_KEY)
        if state is None:
            return
        if state.get('version', STATE_VERSION) > STATE_VERSION:
            raise ValueError(
                f'the CPDHook state in the checkpoint has version '
                f"{state['version']}, newer than this mmcpd reads "
                f'({STATE_VERSION})')
        self._restored = state
