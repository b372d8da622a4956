"""What follows the student through the runner when CPDHook cuts it: EMA
copies, the DDP wrapper, the feature connectors of a distillation wrapper
(resized by :mod:`mmcpd.distill.follow`)."""
import copy
from typing import Callable, List, Mapping, Sequence

import torch
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper, OptimWrapperDict
from torch import nn

from mmcpd.distill.follow import kept_feature_channels
from mmcpd.models.distill_wrapper import DistillWrapper
from mmcpd.prune.surgery.physical import Replaced


def ema_students(runner, prefix: str) -> List[tuple]:
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
            name = prefix.rstrip('.')
            students.append((model.get_submodule(name) if name else model,
                             averaged.update_buffers))
    return students


def refresh_averaged(runner) -> None:
    """Point EMA hooks' averaged models at their cut tensors: mmengine's
    ``BaseAveragedModel`` keeps a dict of the tensors it averages, made
    when it was built."""
    from mmengine.model import BaseAveragedModel
    for hook in getattr(runner, 'hooks', ()):
        averaged = getattr(hook, 'ema_model', None)
        if isinstance(averaged, BaseAveragedModel):
            module = averaged.module
            averaged.avg_parameters = module.state_dict() \
                if averaged.update_buffers else dict(module.named_parameters())


def rewrap(runner) -> None:
    """Wrap the runner's model anew (DDP), so that its buckets and
    parameter list fit the cut tensors; the train loop reads
    ``runner.model`` at every iteration."""
    if not is_model_wrapper(runner.model):
        return
    cfg = runner.cfg.get('model_wrapper_cfg')
    runner.model = runner.wrap_model(
        copy.deepcopy(cfg) if cfg is not None else None, runner.model.module)


def follow_connectors(wrapper: nn.Module, pruner,
                      new: Mapping[int, Sequence[int]]
                      ) -> Callable[[], Replaced]:
    """Prepare, before ``pruner`` cuts ``new`` units (unpruned numbering)
    out of the student of a ``DistillWrapper``, the resizing of its feature
    connectors; the returned function resizes them once the student is cut
    and returns the replaced connector parameters. Nothing to do for logit
    terms, mask mode or other models."""
    names = wrapper.feature_modules() if isinstance(
        wrapper, DistillWrapper) else {}
    if not names or pruner.mode.keeps_shapes or not new:
        return dict
    kept = kept_feature_channels(wrapper.student, sorted(set(names.values())),
                                 pruner.current, pruner.to_current(new),
                                 wrapper.probe_shape)
    return lambda: wrapper.follow_student(kept)


def student_prefix(model: nn.Module, student: nn.Module) -> str:
    """Where ``student`` sits in ``model`` (a DDP wrapper looked through):
    the prefix of its names in the saved state dict."""
    model = model.module if is_model_wrapper(model) else model
    for name, module in model.named_modules():
        if module is student:
            return name + '.' if name else ''
    return ''


def student_optimizers(runner) -> List[torch.optim.Optimizer]:
    """The optimizers of the runner's optim wrapper(s)."""
    wrapper = getattr(runner, 'optim_wrapper', None)
    if isinstance(wrapper, OptimWrapperDict):
        return [w.optimizer for w in wrapper.values()]
    if isinstance(wrapper, OptimWrapper):
        return [wrapper.optimizer]
    return []


@torch.no_grad()
def ema_weights(runner, student: nn.Module, prefix: str) -> nn.Module:
    """The student as validation sees it: with an EMAHook, the EMA
    parameters (and buffers, if averaged) in a copy of the student."""
    ema = ema_students(runner, prefix)
    if not ema:
        return student
    averaged, with_buffers = ema[0]
    model = copy.deepcopy(student)
    pairs = [(model.parameters(), averaged.parameters())]
    if with_buffers:
        pairs.append((model.buffers(), averaged.buffers()))
    for mine, theirs in pairs:
        for a, b in zip(mine, theirs):
            a.copy_(b)
    return model
