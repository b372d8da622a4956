"""CPDHook: iterative structured pruning inside mmengine training.

The hook holds no algorithm: it routes runner events to a
:class:`~mmcpd.prune.session.PruneSession` (one call per event, as
mmengine's ``EMAHook`` does with its averaged model) and follows each cut
through what the runner holds.
"""
import contextlib
import os.path as osp
from typing import Callable, List, Optional, Sequence, Union

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapperDict
from torch import nn

from mmcpd.comb.cuda_only_ops import cuda_only_ops
from mmcpd.comb.resolve import check_ignore
from mmcpd.engine.cpd_fields import check_cpd_fields
from mmcpd.engine.hooks.cpd_report import (channel_table, log_step,
                                           plot_history)
from mmcpd.engine.hooks.follow_cut import (ema_students, ema_weights,
                                           follow_connectors, refresh_averaged,
                                           rewrap, student_optimizers,
                                           student_prefix)
from mmcpd.engine.hooks.grad_tap import tap_clip_grad
from mmcpd.engine.latency import closed_loop_meter, latency_table_for
from mmcpd.models.distill_wrapper import unwrap_student
from mmcpd.models.loading import load_pruned_checkpoint
from mmcpd.prune import verified_comb  # looked up at call time (tests)
from mmcpd.prune.convert import small_checkpoint
from mmcpd.prune.cost import ACT_WEIGHT
from mmcpd.prune.schedule import check_schedule_args
from mmcpd.prune.session import (STATE_KEY, PruneSession,
                                 is_deploy_checkpoint, pack_state,
                                 unpack_state)
from mmcpd.prune.settings import PruneSettings, check_input_shape
from mmcpd.prune.spec import CHECKPOINT_KEY
from mmcpd.prune.surgery.optim_state import shrink_optimizer
from mmcpd.prune.widths import ROUND_TO
from mmcpd.registry import HOOKS
from mmcpd.utils.checkpoint import add_mmengine_safe_globals
from mmcpd.utils.module import import_callable


@HOOKS.register_module()
class CPDHook(Hook):
    """Prune the (student) model to a target while it trains.

    Every ``interval`` iterations from ``start`` on, the units (channels,
    heads, ...) of the coupled groups found by :func:`mmcpd.comb_model` are
    ranked globally by importance per cost, and the lowest are removed until
    the schedule's fraction of params or FLOPs is gone; the last prune step
    reaches ``target``, and training then goes on with the architecture
    fixed. The algorithm is a :class:`~mmcpd.prune.session.PruneSession`; the
    hook routes the runner's events to it, follows its cuts through the
    runner (optimizers, EMA, DDP, connectors), logs, and saves and restores
    its state under one checkpoint key.

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
            a quarter of the training iterations (``mmcpd.prune.schedule.
            END_FRACTION``).
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
        forward (str | callable, optional): How the comb runs the student:
            ``forward(model, inputs)`` returning the outputs whose shapes
            never change, or its import path (``'my_pkg.module.fn'``, for
            text configs). Defaults to None: the model's tensor mode
            (detectors with data samples made from the input's shape, see
            :mod:`mmcpd.comb.tensor_mode`).
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
                 forward: Union[str, Callable, None] = None,
                 deploy_file: Optional[str] = 'pruned_deploy.pth',
                 plot_file: Optional[str] = 'cpd_pruning.png'):
        check_schedule_args(target, interval, start, end, num_steps,
                            schedule)
        self.settings = PruneSettings(
            target, metric, shrink, importance, min_channels, max_ratio,
            round_to, rank_by, act_weight, latency_table, closed_loop,
            ignore)
        self.schedule_args = dict(interval=interval, start=start, end=end,
                                  num_steps=num_steps, kind=schedule)
        self.input_shape = check_input_shape(input_shape)
        self.forward = import_callable(forward, 'forward')
        # Resume and load_from read mmengine checkpoints with torch's
        # weights_only default: allow exactly the types mmengine writes.
        add_mmengine_safe_globals()
        self.deploy_file = deploy_file
        self.plot_file = plot_file
        self.session = PruneSession(self.settings, self.schedule_args)
        self.student: Optional[nn.Module] = None
        self.student_prefix = ''
        self._handles: List = []
        self._read_in_clip = False
        self._norm_ctx = None
        self._runner = None

    # ------------------------------------------------------------------
    # setup
    def before_run(self, runner) -> None:
        # mmcv ops with device kernels only (CARAFE, masked conv) run as
        # PyTorch ops where the model is on the CPU, for the run only
        self.after_run(runner)
        self._cuda_only = contextlib.ExitStack()
        self._cuda_only.enter_context(cuda_only_ops())

    def after_run(self, runner) -> None:
        if getattr(self, '_cuda_only', None) is not None:
            self._cuda_only.close()

    def before_train(self, runner) -> None:
        # a plain Runner ignores `distill` / `cpd`: fail, do not fall back
        check_cpd_fields(runner)
        self._find_student(runner)
        check_ignore(self.student, self.settings.ignore)
        session = self.session
        if not session.started:
            # rank 0 combs and verifies, the others take its groups: a
            # borderline group must not differ between ranks
            comb = self._trace(self.student) if session.sync.is_main() \
                else None
            for warning in getattr(comb, 'warnings', ()):
                runner.logger.warning(f'CPDHook comb: {warning}')
            session.start(self.student, session.sync.broadcast(comb),
                          self._table())
        if not session.groups:
            raise RuntimeError(
                f'CPDHook found no prunable group in '
                f'{type(self.student).__name__} (ignore='
                f'{self.settings.ignore!r}); see the comb warnings above')
        reachable = session.begin(runner.max_iters)
        session.measure = closed_loop_meter(
            session, self._example,
            osp.join(runner.work_dir, 'cpd_latency_reference.onnx'),
            lambda msg: runner.logger.warning(f'CPDHook: {msg}'),
            'CPDHook `closed_loop`', forward=self.forward)
        self._register_optimizer_hooks(runner)
        if session.pruner.mode.keeps_shapes:
            self._follow_cut(runner, {})
        if not session.history:
            session.record(runner.iter)
        schedule = session.schedule
        runner.logger.info(
            f'CPDHook: {len(session.groups)} prunable groups of '
            f'{len(session.comb.groups)}; {schedule.num_steps} prune steps '
            f'every {schedule.interval} iters from iter {schedule.start} '
            f'to {schedule.end}, to remove {self.settings.target:.0%} of '
            f'the {self.settings.metric} (at most {reachable:.0%} '
            f'possible), shrink={session.shrink!r}')

    def _find_student(self, runner) -> None:
        self._runner = runner
        # the student of a DistillWrapper, or the model (DDP looked through)
        self.student = unwrap_student(runner.model)
        self.student_prefix = student_prefix(runner.model, self.student)

    def _trace(self, student: nn.Module):
        param = next(student.parameters())
        inputs = torch.randn(self.input_shape, device=param.device)
        was_training = student.training
        student.eval()
        try:
            return verified_comb.comb_model(student, inputs,
                                            forward_fn=self.forward,
                                            ignore=self.settings.ignore)
        except Exception as err:
            raise RuntimeError(
                f'CPDHook cannot comb {type(student).__name__} with an '
                f'input of `input_shape`={self.input_shape}: {err} (set '
                '`forward` to a function(model, inputs) that runs it)'
            ) from err
        finally:
            student.train(was_training)

    def _table(self) -> Optional[dict]:
        return latency_table_for(self.settings, self.student,
                                 self._example, self.session.sync,
                                 forward=self.forward)

    def _example(self) -> torch.Tensor:
        """A random input of ``input_shape``, drawn only where it is used:
        each draw moves the random stream that dropout draws from."""
        return torch.randn(self.input_shape)

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
        tap = tap_clip_grad(wrappers[0], self._observe)
        self._read_in_clip = tap is not None
        if tap is not None:
            self._handles.append(tap)

    def _remove_optimizer_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _observe(self) -> None:
        if self._runner is not None:
            self.session.observe(self._runner.iter)

    def _before_step(self, optimizer, args, kwargs) -> None:
        if optimizer is not self._optimizers[0]:
            return
        self.session.before_update()
        if not self._read_in_clip:
            self._observe()

    def _after_step(self, optimizer, args, kwargs) -> None:
        # Gradients were zeroed before the step, so SGD / Adam / AdamW
        # leave the optimizer state of removed entries at zero (it is zeroed
        # at each prune step); re-zeroing the weights also covers any
        # optimizer that moves weights without a gradient.
        self.session.after_update()

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        self._exit_norms()
        due = self.session.step(runner.iter + 1)
        if due is None:
            return
        self._follow_cut(runner, due.new)
        log_step(runner, self.session, due,
                 self.session.record(runner.iter + 1, due))

    def _follow_cut(self, runner, new) -> None:
        """Remove ``new`` units (unpruned numbering) from the student, its
        optimizers and its EMA copies: cut out, the connectors of a
        distillation wrapper following and DDP wrapped anew
        (``'physical'``), or held at zero (``'mask'``)."""
        session = self.session
        optimizers = student_optimizers(runner)
        copies = [m for m, _ in ema_students(runner, self.student_prefix)]
        wrapper = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        connectors = follow_connectors(wrapper, session.pruner, new)
        session.apply(new, optimizers, copies)
        if session.pruner.mode.keeps_shapes or not new:
            return
        replaced = connectors()
        for optimizer in optimizers:
            shrink_optimizer(optimizer, replaced)
        refresh_averaged(runner)
        rewrap(runner)

    def _enter_norms(self) -> None:
        # Around whole iterations rather than the student's forward, since
        # a distillation wrapper may call the student's methods directly.
        if self._norm_ctx is None and self.session.started:
            self._norm_ctx = self.session.norms(self.student)
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
        if metrics and self.session.started:
            self.session.record_val(runner.iter, metrics)

    def after_train(self, runner) -> None:
        self._remove_optimizer_hooks()
        session = self.session
        if not session.started:
            return
        runner.logger.info('CPDHook: channels kept per group\n' +
                           channel_table(session.groups, session.removed))
        if not is_main_process():
            return
        if self.plot_file:
            path = plot_history(session.history, session.val_history,
                                osp.join(runner.work_dir, self.plot_file))
            runner.logger.info(f'CPDHook: plot saved to {path}')
        if self.deploy_file:
            path = osp.join(runner.work_dir, self.deploy_file)
            # With an EMAHook, the EMA weights that validation saw.
            ema = bool(ema_students(runner, self.student_prefix))
            small, spec = session.small(
                ema_weights(runner, self.student, self.student_prefix))
            ckpt = small_checkpoint(
                small, spec,
                dict(session.history[-1], iter=int(runner.iter), ema=ema))
            torch.save(ckpt, path)
            runner.logger.info(f'CPDHook: pruned model saved to {path}' +
                               (' (EMA weights)' if ema else ''))

    # ------------------------------------------------------------------
    # checkpoints: one key, one owner (the session)
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if not self.session.started:
            return
        checkpoint[STATE_KEY] = pack_state(self.session,
                                           self.student_prefix)
        checkpoint[CHECKPOINT_KEY] = self.session.spec().to_dict()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Restore the session; in ``'physical'`` mode, cut the student
        (and re-point its optimizers, cut its EMA copies, wrap DDP anew) to
        the checkpoint's architecture before the runner loads its
        weights."""
        entry = checkpoint.get(STATE_KEY)
        if entry is None:
            if is_deploy_checkpoint(checkpoint) and not getattr(
                    runner, 'applies_cpd_fields', False):
                self._load_pruned(runner, checkpoint)
            return
        state, _ = unpack_state(entry)
        self._find_student(runner)
        session = self.session = PruneSession(self.settings,
                                              self.schedule_args)
        pending = session.load_state_dict(state, self.student, self._table())
        if session.shrink != self.settings.shrink:
            runner.logger.warning(
                f'CPDHook: the checkpoint was pruned with '
                f'shrink={session.shrink!r}, which this run goes on with '
                f'(shrink={self.settings.shrink!r} applies to new runs)')
        if pending:
            self._follow_cut(runner, pending)

    def _load_pruned(self, runner, checkpoint: dict) -> None:
        """A pruned (deploy) checkpoint in a runner that is no CPDRunner
        (MMSeg's ``test.py`` builds a plain ``Runner``): resize the student
        to its spec and load it strictly, then hand the runner the whole
        model's weights to load (a wrapper's teacher included)."""
        self._find_student(runner)
        shapes = {k: list(v.shape)
                  for k, v in self.student.state_dict().items()}
        spec = checkpoint[CHECKPOINT_KEY]
        if all(shapes.get(k) == list(v) for k, v in spec['shapes'].items()):
            return  # resized by whoever loads it (mmcpd's tools/test.py)
        load_pruned_checkpoint(self.student, checkpoint,
                               config_name=str(runner.cfg.filename))
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        checkpoint['state_dict'] = model.state_dict()
        runner.logger.info(
            'CPDHook: the model is resized to the pruned checkpoint\'s spec '
            f"({len(spec['shapes'])} tensors)")
