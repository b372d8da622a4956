"""Wrap the model of an inherited config for distillation.

A CPD base config (``configs/_base_/cpd_kd.py``, ``cpd_cwd.py``) cannot
name the model of the config that inherits it: mmengine merges ``_base_``
files key by key, and the user's ``model`` comes from another base. So the
base config declares *what* to distil in a ``distill`` field and sets
``runner_type`` to :class:`CPDRunner`, which wraps ``cfg.model`` into a
:class:`~mmcpd.models.DistillWrapper` before the runner is built. Any
OpenMMLab ``tools/train.py`` builds runners through ``runner_type``, so
inheriting the base config is all a user does::

    _base_ = ['mmpretrain::resnet/resnet50_8xb32_in1k.py',
              'mmcpd::_base_/cpd_kd.py']

The ``distill`` field maps one to one onto the DistillWrapper's arguments
other than ``student``::

    distill = dict(
        distill_losses=[dict(type='KDLoss', tau=1.0, loss_weight=1.0)],
        keep_task_loss=True,       # optional
        teacher=None,              # optional: another model ...
        teacher_checkpoint=None)   # ... and its weights
"""
import copy
from typing import Iterable, Union

from mmengine.config import Config, ConfigDict
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

DISTILL_KEY = 'distill'
WRAPPER_TYPES = ('DistillWrapper', 'mmcpd.DistillWrapper',
                 'mmcpd.models.DistillWrapper')
_WRAPPER_ARGS = ('teacher', 'teacher_checkpoint', 'distill_losses',
                 'keep_task_loss', 'probe_shape')


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


@RUNNERS.register_module()
class CPDRunner(Runner):
    """An mmengine Runner that wraps the model for distillation first.

    Set by the CPD base configs as ``runner_type``; it applies
    :func:`wrap_for_distill` to the config and then builds a plain
    :class:`~mmengine.runner.Runner`. The one other change: the frozen
    teacher of a DistillWrapper is taken out of the optimizer that the
    config's optimizer constructor builds (any constructor adds every
    parameter, frozen or not).
    """

    @classmethod
    def from_cfg(cls, cfg: Config) -> 'Runner':
        """Build a runner from a config, the model wrapped for distillation.

        Args:
            cfg (Config): A training config, possibly with ``distill``.

        Returns:
            Runner: The runner.
        """
        cfg = copy.deepcopy(cfg)
        wrap_for_distill(cfg)
        return super().from_cfg(cfg)

    def build_optim_wrapper(self, optim_wrapper):
        """Build the optimizer as the config says, without the teacher."""
        optim_wrapper = super().build_optim_wrapper(optim_wrapper)
        from mmcpd.models import DistillWrapper
        model = self.model
        while is_model_wrapper(model):
            model = model.module
        if isinstance(model, DistillWrapper):
            removed = remove_from_optimizer(optim_wrapper,
                                            model.teacher.parameters())
            if removed:
                self.logger.info(f'CPDRunner: {removed} teacher parameters '
                                 'are not in the optimizer')
        return optim_wrapper
