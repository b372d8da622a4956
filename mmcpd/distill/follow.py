"""Which channels of a student's feature survive a cut: what the feature
connectors of a distillation follow when the student is pruned for real.

Found on a randomised CPU copy of the student: the cut copy's channels are
the masked copy's kept ones (the equivalence that the comb's verification
checks), matched in order.
"""
import copy
from typing import Dict, Mapping, Sequence

import torch
from torch import nn

from mmcpd.comb.tensor_mode import tensor_forward
from mmcpd.distill.connector import channel_dim
from mmcpd.distill.recorder import as_tensor, record_outputs
from mmcpd.prune.surgery.dead import DeadUnits
from mmcpd.prune.surgery.mask import exact_norms
from mmcpd.prune.surgery.physical import prune_units
from mmcpd.prune.surgery.verify import randomize_model
from mmcpd.utils.module import cpu_copy


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
                          current, delta: Mapping[int, Sequence[int]],
                          probe_shape: Sequence[int]
                          ) -> Dict[str, tuple]:
    """For each feature (student module output) that loses channels when
    ``delta`` (numbering of ``current``, the comb result of the student as
    it is now) is cut: the kept channel indices, the
    channels before and the feature's dimensions.

    Found on a randomised copy of the student: the cut copy's channels are
    the masked copy's non-removed ones (the equivalence that comb's
    verification checks).
    """
    # on CPU copies: no second student on the GPU, no TF32 round-off
    probe = randomize_model(cpu_copy(student)).eval()
    masked = copy.deepcopy(probe)
    DeadUnits(masked, current.groups, delta).zero_tensors()
    prune_units(probe, current, delta)
    x = torch.randn(1, *probe_shape,
                    generator=torch.Generator().manual_seed(0))
    with record_outputs(masked, list(names)) as m_out, \
            exact_norms(masked, current, delta):
        tensor_forward(masked, x)
    with record_outputs(probe, list(names)) as c_out:
        tensor_forward(probe, x)
    kept = {}
    for name in names:
        m = as_tensor(m_out[name], name, 'student')
        c = as_tensor(c_out[name], name, 'student')
        dim = channel_dim(m.dim())
        if m.shape[dim] != c.shape[dim]:
            kept[name] = (_match(m, c, dim, name), m.shape[dim], m.dim())
    return kept
