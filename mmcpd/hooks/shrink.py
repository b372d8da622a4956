"""What follows the student when CPDHook cuts it: EMA copies, the DDP
wrapper, the feature connectors of a distillation wrapper."""
import copy
from typing import Callable, Dict, List, Mapping, Sequence

import torch
from mmengine.model import is_model_wrapper
from torch import nn

from mmcpd.prune.physical import Replaced


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


def _match(masked: torch.Tensor, cut: torch.Tensor, dim: int,
           name: str) -> torch.Tensor:
    """Indices of ``masked``'s channels that ``cut``'s channels are, in
    order (removed channels of the masked model are zero)."""
    masked = masked.movedim(dim, 0).flatten(1)
    cut = cut.movedim(dim, 0).flatten(1)
    keep, i = [], 0
    for j in range(cut.shape[0]):
        while i < masked.shape[0] and not torch.allclose(
                masked[i], cut[j], rtol=1e-3, atol=1e-5):
            i += 1
        if i == masked.shape[0]:
            raise RuntimeError(
                f'the cut student feature `{name}` does not match the '
                f'masked one (channel {j}): cannot resize its connector')
        keep.append(i)
        i += 1
    return torch.tensor(keep, dtype=torch.long)


@torch.no_grad()
def kept_feature_channels(student: nn.Module, names: Sequence[str],
                          pruner, delta: Mapping[int, Sequence[int]],
                          probe_shape: Sequence[int]
                          ) -> Dict[str, tuple]:
    """For each feature (student module output) that loses channels when
    ``delta`` (current numbering) is cut: the kept channel indices, the
    channels before and the feature's dimensions.

    Found on a randomised copy of the student: the cut copy's channels are
    the masked copy's non-removed ones (the equivalence that comb's
    verification checks).
    """
    from mmcpd.distill.connector import channel_dim
    from mmcpd.distill.recorder import as_tensor, record_outputs
    from mmcpd.prune.dead import DeadUnits
    from mmcpd.prune.mask import exact_norms
    from mmcpd.prune.physical import prune_units
    from mmcpd.prune.verify import randomize_model
    probe = randomize_model(copy.deepcopy(student)).eval()
    masked = copy.deepcopy(probe)
    DeadUnits(masked, pruner.current.groups, delta).zero_tensors()
    prune_units(probe, pruner.current, delta)
    param = next(student.parameters())
    x = torch.randn(1, *probe_shape, generator=torch.Generator().manual_seed(
        0)).to(param.device)
    with record_outputs(masked, list(names)) as m_out, \
            exact_norms(masked, pruner.current, delta):
        masked(x, mode='tensor')
    with record_outputs(probe, list(names)) as c_out:
        probe(x, mode='tensor')
    kept = {}
    for name in names:
        m = as_tensor(m_out[name], name, 'student')
        c = as_tensor(c_out[name], name, 'student')
        dim = channel_dim(m.dim())
        if m.shape[dim] != c.shape[dim]:
            kept[name] = (_match(m, c, dim, name), m.shape[dim], m.dim())
    return kept


def follow_connectors(wrapper: nn.Module, pruner,
                      new: Mapping[int, Sequence[int]]
                      ) -> Callable[[], Replaced]:
    """Prepare, before ``pruner`` cuts ``new`` units (unpruned numbering)
    out of the student of a ``DistillWrapper``, the resizing of its feature
    connectors; the returned function resizes them once the student is cut
    and returns the replaced connector parameters. Nothing to do for logit
    terms, mask mode or other models."""
    from mmcpd.models.distill_wrapper import DistillWrapper
    names = wrapper.feature_modules() if isinstance(
        wrapper, DistillWrapper) else {}
    if not names or pruner.shrink != 'physical' or not new:
        return dict
    kept = kept_feature_channels(wrapper.student, sorted(set(names.values())),
                                 pruner, pruner.to_current(new),
                                 wrapper.probe_shape)
    return lambda: wrapper.follow_student(kept)
