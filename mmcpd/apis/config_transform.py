"""Turn the CPD fields of an inherited config into a wrapper and a hook.

A CPD base config (``configs/_base_/cpd_kd.py``, ``cpd_cwd.py``) cannot
name the model or the hooks of the config that inherits it: mmengine merges
``_base_`` files key by key, refuses a key that two bases define, and the
user's ``model`` and ``custom_hooks`` come from another base. So the base
config declares *what* to do in two dict fields, ``distill`` and ``cpd``
(:mod:`mmcpd.apis.cpd_settings`), and sets ``runner_type`` to
:class:`CPDRunner`, which wraps ``cfg.model`` into a
:class:`~mmcpd.models.DistillWrapper` and appends the ``CPDHook`` before
the runner is built (:func:`transform_config`). Any OpenMMLab
``tools/train.py`` and ``tools/test.py`` builds runners through
``runner_type``, so inheriting the base config is all a user does::

    _base_ = ['mmpretrain::resnet/resnet50_8xb32_in1k.py',
              'mmcpd::_base_/cpd_kd.py']

The ``distill`` field maps one to one onto the DistillWrapper's arguments
other than ``student``::

    distill = dict(
        distill_losses=[dict(type='KDLoss', tau=1.0, loss_weight=1.0)],
        keep_task_loss=True,       # optional
        train_teacher=False,       # optional: fine-tune it alongside
        teacher=None,              # optional: another model ...
        teacher_checkpoint=None)   # ... and its weights
"""
import copy
import os.path as osp
from typing import Iterable, List, Optional, Union

from mmengine.config import Config, ConfigDict
from mmengine.dist import is_main_process
from mmengine.hooks import EMAHook
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmengine.registry import RUNNERS
from mmengine.runner import Runner
from torch import nn

# Register mmcpd's hooks, models and datasets: a config that names this
# runner by import path needs no ``custom_imports``.
import mmcpd.datasets  # noqa: F401
import mmcpd.hooks  # noqa: F401
import mmcpd.models  # noqa: F401
from mmcpd.prune.convert import STATE_KEY
from mmcpd.prune.spec import CHECKPOINT_KEY
from .cpd_settings import CPD_KEY, add_cpd_hook, is_cpd_hook

DISTILL_KEY = 'distill'
#: What the CPD base configs set as ``runner_type``.
RUNNER_TYPE = 'mmcpd.apis.config_transform.CPDRunner'
WRAPPER_TYPES = ('DistillWrapper', 'mmcpd.DistillWrapper',
                 'mmcpd.models.DistillWrapper')
_WRAPPER_ARGS = ('teacher', 'teacher_checkpoint', 'distill_losses',
                 'keep_task_loss', 'train_teacher', 'probe_shape')


def _is_wrapper(model_cfg) -> bool:
    from mmcpd.models import DistillWrapper
    model_type = model_cfg.get('type')
    return model_type in WRAPPER_TYPES or model_type is DistillWrapper


def wrap_for_distill(cfg: Union[Config, dict]) -> Union[Config, dict]:
    """Wrap ``cfg.model`` into a DistillWrapper as ``cfg.distill`` says.

    The config's top-level ``data_preprocessor`` (MMPretrain configs keep
    it there; the runner would hand it to the outer model) moves into the
    student, whose pre-processor the wrapper then shares. A config without
    ``distill``, or whose model already is a DistillWrapper, is returned
    unchanged.

    Args:
        cfg (Config | dict): A full training config; changed in place.

    Returns:
        Config | dict: ``cfg``.

    Raises:
        TypeError: ``distill`` is not a dict.
        KeyError: ``distill`` has a key the DistillWrapper does not take.

    Examples:
        >>> cfg = Config(dict(model=dict(type='ImageClassifier', ...),
        ...                   distill=dict(distill_losses=[
        ...                       dict(type='KDLoss', tau=1.0)])))
        >>> wrap_for_distill(cfg).model.type
        'DistillWrapper'
    """
    distill = cfg.get(DISTILL_KEY, None)
    if distill is None:
        return cfg
    if not isinstance(distill, dict):
        raise TypeError(f'`{DISTILL_KEY}` should be a dict of DistillWrapper '
                        f'arguments, but got {type(distill).__name__}')
    unknown = sorted(set(distill) - set(_WRAPPER_ARGS))
    if unknown:
        raise KeyError(f'`{DISTILL_KEY}` should only have keys in '
                       f'{_WRAPPER_ARGS}, but got {unknown}')
    model = cfg.get('model', None)
    if not isinstance(model, dict):
        raise TypeError('`model` should be a config dict to wrap for '
                        f'distillation, but got {type(model).__name__}')
    if _is_wrapper(model):
        return cfg
    student = copy.deepcopy(model)
    preprocessor = cfg.get('data_preprocessor', None)
    if preprocessor is not None:
        student.setdefault('data_preprocessor', copy.deepcopy(preprocessor))
        cfg['data_preprocessor'] = None
    wrapper = dict(type='DistillWrapper', student=student)
    wrapper.update(copy.deepcopy(dict(distill)))
    cfg['model'] = ConfigDict(wrapper) if isinstance(cfg, Config) \
        else wrapper
    return cfg


def remove_from_optimizer(optim_wrapper: Union[OptimWrapper,
                                                OptimWrapperDict],
                          params: Iterable[nn.Parameter]) -> int:
    """Take ``params`` out of every param group of the optimizer(s).

    Groups left empty are dropped. Call it before the optimizer steps or
    its schedulers are built.

    Args:
        optim_wrapper (OptimWrapper | OptimWrapperDict): Built optimizer(s).
        params (Iterable[Parameter]): The parameters to remove.

    Returns:
        int: How many parameter entries were removed.
    """
    ids = {id(p) for p in params}
    wrappers = (
        optim_wrapper.values()
        if isinstance(optim_wrapper, OptimWrapperDict) else [optim_wrapper])
    removed = 0
    for wrapper in wrappers:
        optimizer = wrapper.optimizer
        groups = []
        for group in optimizer.param_groups:
            kept = [p for p in group['params'] if id(p) not in ids]
            removed += len(group['params']) - len(kept)
            group['params'] = kept
            if kept:
                groups.append(group)
        optimizer.param_groups[:] = groups
    return removed


def transform_config(cfg: Union[Config, dict]) -> List[str]:
    """Everything :class:`CPDRunner` does to a config before building.

    The ``distill`` field wraps the model (:func:`wrap_for_distill`) and the
    ``cpd`` field becomes a CPDHook appended to ``custom_hooks``
    (:func:`~mmcpd.apis.cpd_settings.add_cpd_hook`). ``cfg`` is changed in
    place.

    Args:
        cfg (Config | dict): A training config.

    Returns:
        list[str]: Lines for the log (the comb input size and its source).
    """
    notes = [add_cpd_hook(cfg)]
    wrap_for_distill(cfg)
    return [note for note in notes if note]


def check_cpd_fields(runner: Runner) -> None:
    """Fail if the runner left the config's ``distill`` or ``cpd`` unused.

    A plain mmengine ``Runner`` ignores fields it does not know: it would
    train without the teacher, or without pruning. Called by the CPDHook
    before training (a CPDHook in ``custom_hooks`` runs with any runner).

    Args:
        runner (Runner): The runner, before its first iteration.

    Raises:
        RuntimeError: ``distill`` is set but the model is no
            DistillWrapper, or ``cpd`` is set but the runner is not a
            :class:`CPDRunner`; the message says what to add.
    """
    from mmcpd.models import DistillWrapper
    cfg = getattr(runner, 'cfg', None) or {}
    fix = ('build the runner from `runner_type = '
           f"'{RUNNER_TYPE}'` (the CPD base configs set "
           "it) with `RUNNERS.build(cfg)`, as OpenMMLab's tools/train.py "
           'does, not with `Runner.from_cfg`')
    model = runner.model
    while is_model_wrapper(model):
        model = model.module
    if cfg.get(DISTILL_KEY, None) is not None and not isinstance(
            model, DistillWrapper):
        raise RuntimeError(
            f'the config sets `{DISTILL_KEY}`, but the model is a '
            f'{type(model).__name__}, not a DistillWrapper: it would train '
            f'without the teacher. To distil, {fix}; or set '
            f'`{DISTILL_KEY} = None`')
    if cfg.get(CPD_KEY, None) is not None and not isinstance(
            runner, CPDRunner):
        raise RuntimeError(
            f'the config sets `{CPD_KEY}`, but a {type(runner).__name__} '
            f'ignores it. To prune with these settings, {fix}; or set '
            f'`{CPD_KEY} = None` to prune with the CPDHook of '
            '`custom_hooks` only')


def deploy_config(cfg: Config, spec: dict) -> Config:
    """The config that builds the pruned model of a CPD training config.

    Its ``model`` is a ``mmcpd.models.PrunedModel``: the (student) model of
    ``cfg`` resized to ``spec``; the CPD fields, the CPDHook and
    ``load_from`` are gone. With it, a deploy checkpoint is a normal
    checkpoint for MMPretrain's and MMSeg's ``init_model``, inferencers
    and tools, and for a plain mmengine ``Runner``.

    Args:
        cfg (Config): The training config, as :func:`transform_config`
            left it or not.
        spec (dict): The deploy checkpoint's ``pruned_spec``.

    Returns:
        Config: The deploy config.
    """
    cfg = copy.deepcopy(cfg)
    model = cfg.model
    if _is_wrapper(model):
        model = model.student
    else:
        preprocessor = cfg.get('data_preprocessor', None)
        if preprocessor is not None:
            model.setdefault('data_preprocessor', preprocessor)
    for key in ('runner_type', DISTILL_KEY, CPD_KEY, 'data_preprocessor'):
        cfg.pop(key, None)
    cfg.model = dict(
        type='mmcpd.models.PrunedModel',
        model=model,
        pruned_spec=spec,
        data_preprocessor=model.get('data_preprocessor', None))
    cfg.custom_hooks = [
        h for h in cfg.get('custom_hooks', None) or [] if not is_cpd_hook(h)
    ]
    cfg.load_from = None
    cfg.resume = False
    return cfg


@RUNNERS.register_module()
class CPDRunner(Runner):
    """An mmengine Runner that applies a config's ``distill`` and ``cpd``.

    Set by the CPD base configs as ``runner_type``. Before building a plain
    :class:`~mmengine.runner.Runner`, :func:`transform_config` wraps the
    model into a DistillWrapper as ``distill`` says and appends the CPDHook
    of ``cpd`` to the config's own hooks. Besides:

    - the frozen teacher of a DistillWrapper is taken out of the optimizer
      that the config's optimizer constructor builds (any constructor adds
      every parameter, frozen or not); a teacher trained alongside
      (``train_teacher=True``) stays in it;
    - a pruned (deploy) checkpoint given as ``load_from`` (what
      ``tools/test.py CONFIG pruned_deploy.pth`` of MMPretrain and MMSeg
      does) resizes the model to its spec before its weights load;
    - after training, next to the CPDHook's deploy checkpoint, a deploy
      config (:func:`deploy_config`) is written: ``pruned_deploy.py``.
    """

    @classmethod
    def from_cfg(cls, cfg: Config) -> 'Runner':
        """Build a runner from a config with ``distill`` and ``cpd`` fields.

        Args:
            cfg (Config): A training config.

        Returns:
            Runner: The runner.
        """
        cfg = copy.deepcopy(cfg)
        notes = transform_config(cfg)
        runner = super().from_cfg(cfg)
        for note in notes:
            runner.logger.info(note)
        return runner

    def build_optim_wrapper(self, optim_wrapper):
        """Build the optimizer as the config says, without the teacher."""
        optim_wrapper = super().build_optim_wrapper(optim_wrapper)
        from mmcpd.models import DistillWrapper
        model = self.model
        while is_model_wrapper(model):
            model = model.module
        if isinstance(model, DistillWrapper) and not model.train_teacher:
            removed = remove_from_optimizer(optim_wrapper,
                                            model.teacher.parameters())
            if removed:
                self.logger.info(f'CPDRunner: {removed} teacher parameters '
                                 'are not in the optimizer')
        return optim_wrapper

    def load_checkpoint(self,
                        filename: str,
                        map_location='cpu',
                        strict: bool = False,
                        revise_keys=((r'^module.', ''), )):
        """Load a checkpoint; a deploy checkpoint resizes the model first.

        A deploy checkpoint (``pruned_spec`` without the CPDHook's training
        state) is loaded strictly into the (student) model, resized to its
        spec; EMA models of ``EMAHook`` are rebuilt at the new size. Any
        other checkpoint loads as :meth:`Runner.load_checkpoint` does.
        """
        from mmengine.runner.checkpoint import (_load_checkpoint,
                                                _load_checkpoint_to_model)

        from mmcpd.models import unwrap_student
        from .model import load_pruned_checkpoint
        # read once; mmengine's "Loads checkpoint by ..." goes to the log
        checkpoint = _load_checkpoint(
            filename, map_location=map_location, logger='current')
        deploy = isinstance(checkpoint, dict) and \
            CHECKPOINT_KEY in checkpoint and STATE_KEY not in checkpoint
        if deploy:
            load_pruned_checkpoint(
                unwrap_student(self.model),
                checkpoint,
                config_name=str(self.cfg.filename),
                path=filename)
            for hook in self.hooks:
                if isinstance(hook, EMAHook):  # a copy of the full model
                    hook.before_run(self)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        if not deploy:  # as Runner.load_checkpoint does
            model = self.model.module if is_model_wrapper(
                self.model) else self.model
            checkpoint = _load_checkpoint_to_model(
                model, checkpoint, strict, revise_keys=list(revise_keys))
        self._has_loaded = True
        if deploy:
            self.logger.info(
                f'Load the pruned checkpoint {filename}: the model is '
                'resized to its spec '
                f"({len(checkpoint[CHECKPOINT_KEY]['shapes'])} tensors)")
        else:
            self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint

    def train(self):
        """Train; then write the deploy config next to the CPDHook's
        deploy checkpoint."""
        model = super().train()
        if is_main_process():
            self._write_deploy_config()
        return model

    def _write_deploy_config(self) -> Optional[str]:
        from mmcpd.utils.checkpoint import load_checkpoint_file
        hooks = [h for h in self.hooks if is_cpd_hook(h)]
        deploy_file = getattr(hooks[0], 'deploy_file', None) if hooks \
            else None
        if not deploy_file:
            return None
        ckpt = osp.join(self.work_dir, deploy_file)
        if not osp.isfile(ckpt):
            return None
        spec = load_checkpoint_file(ckpt)[CHECKPOINT_KEY]
        path = osp.splitext(ckpt)[0] + '.py'
        try:
            deploy_config(self.cfg, spec).dump(path)
        except Exception as err:  # a config mmengine cannot write as text
            self.logger.warning(f'CPDRunner: no deploy config written '
                                f'({type(err).__name__}: {err})')
            return None
        self.logger.info(f'CPDRunner: deploy config written to {path}: '
                         f'with it, {deploy_file} loads in any OpenMMLab '
                         'tool')
        return path
