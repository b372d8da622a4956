"""Optimizer state that follows physically pruned parameters.

Cutting a parameter makes a new, smaller ``nn.Parameter``; an optimizer
still holds the old one in its ``param_groups`` and keys its per-parameter
state by it. :func:`shrink_optimizer` swaps the new parameter in, in place
of the old one in the same group (so the group's ``lr``,
``weight_decay`` and mmengine's ``lr_mult`` / ``decay_mult`` keys stay
with it), and slices every state tensor shaped like the old parameter
(SGD's ``momentum_buffer``, Adam / AdamW's ``exp_avg``, ``exp_avg_sq``
and ``max_exp_avg_sq``) the same way; scalars such as Adam's ``step`` are
kept. The optimizer then steps the small model exactly as it would have
stepped the kept entries of the large one.
"""
from typing import Mapping

import torch

from mmcpd.prune.surgery.physical import Replaced, slice_kept


@torch.no_grad()
def shrink_optimizer(optimizer: torch.optim.Optimizer,
                     replaced: Replaced) -> int:
    """Point ``optimizer`` at the pruned parameters and slice its state.

    Args:
        optimizer (torch.optim.Optimizer): Any torch optimizer.
        replaced (dict): ``{old parameter: (new parameter, {dim: kept
            indices})}``, as :func:`~mmcpd.prune.surgery.physical.prune_units`
            fills it.

    Returns:
        int: How many parameters of the optimizer were replaced.
    """
    swapped = 0
    for group in optimizer.param_groups:
        params = group['params']
        for i, param in enumerate(params):
            entry = replaced.get(param)
            if entry is None:
                continue
            new, keep = entry
            params[i] = new
            swapped += 1
            state = optimizer.state.pop(param, None)
            if state is not None:
                optimizer.state[new] = _slice_state(state, param.shape, keep)
    return swapped


def _slice_state(state: Mapping, shape: torch.Size,
                 keep: Mapping[int, torch.Tensor]) -> dict:
    out = {}
    for key, value in state.items():
        if torch.is_tensor(value) and value.dim() and value.shape == shape:
            value = slice_kept(value, keep).clone()
        out[key] = value
    return out
