"""Keep removed units dead while training with masks.

Removed units stay in the tensors (shapes, the optimizer and DDP are left
untouched) but every one of their entries is held at zero: weights and
biases, norm affine parameters and running statistics, gradients, and the
optimizer's per-parameter state (SGD momentum, Adam's ``exp_avg`` and
``exp_avg_sq``, ...). A zero weight with a zero gradient and zero state
stays zero under SGD, Adam and AdamW (weight decay of zero is zero), so the
masked model computes exactly what the physically pruned one would. A
fixed table (DETR's positional embedding) has nothing to zero: the masked
model keeps all of it, and its removed channels meet only zeroed input
columns (:mod:`mmcpd.prune.spec.table_select`).

Entries are zeroed by multiplying with a small broadcast 0/1 mask per tensor
(``[out, 1, 1, 1] * [1, in, 1, 1]`` for a conv weight pruned on both
sides): one in-place multiply per tensor, much faster on CPU than
``index_fill_`` along strided dimensions.
"""
from typing import Dict, List, Sequence, Tuple

import torch
from torch import nn

from mmcpd.comb.group import CoupledGroup, Removed
from mmcpd.prune.spec.table_select import selector_of
from mmcpd.prune.surgery.positions import conv_groups, removed_positions


def _mask(shape: Sequence[int], dead: Dict[int, set], like: torch.Tensor,
          split: Dict[int, int]) -> torch.Tensor:
    """A 0/1 tensor broadcasting to ``shape``: 0 on the dead positions.

    Along a dim in ``split`` (a grouped conv's input channels over its
    ``split[dim]`` conv groups) the mask is per row: position ``p`` is
    column ``p % shape[dim]`` of the rows of conv group ``p //
    shape[dim]``."""
    mask = None
    for dim, positions in dead.items():
        groups = split.get(dim, 1)
        keep = torch.ones(groups * shape[dim], dtype=like.dtype,
                          device=like.device)
        keep[sorted(positions)] = 0
        view = [1] * len(shape)
        view[dim] = shape[dim]
        if groups > 1:
            view[0] = shape[0]
            keep = keep.view(groups, 1, shape[dim]).expand(
                groups, shape[0] // groups, shape[dim]).reshape(
                    shape[0], shape[dim])
        keep = keep.view(view)
        mask = keep if mask is None else mask * keep
    return mask


class DeadUnits:
    """Masks of removed units for every tensor of a model.

    Args:
        model (nn.Module): The (masked) model.
        groups (Sequence[CoupledGroup]): All groups of the comb result.
        removed (Mapping[int, Sequence[int]]): Removed units by group id.
    """

    def __init__(self, model: nn.Module, groups: Sequence[CoupledGroup],
                 removed: Removed):
        tensors = dict(model.named_parameters())
        tensors.update(model.named_buffers())
        positions: Dict[str, Dict[int, set]] = {}
        split = conv_groups(groups)
        for (name, dim), dead in removed_positions(groups, removed).items():
            if name not in tensors:
                if selector_of(model, name) is not None:
                    continue  # a fixed table, masked: it keeps every entry
                raise KeyError(
                    f'a removed unit owns `{name}`, which the model does '
                    'not have: was the comb result made for another model?')
            positions.setdefault(name, {})[dim] = dead
        self.entries: List[Tuple[torch.Tensor, torch.Tensor]] = []
        # tensors dead only along dim 0: zeroing their rows touches less
        self.rows: List[Tuple[torch.Tensor, torch.Tensor]] = []
        self.param_masks: Dict[nn.Parameter, torch.Tensor] = {}
        for name, dead in sorted(positions.items()):
            tensor = tensors[name]
            if not tensor.is_floating_point():
                continue
            mask = _mask(tensor.shape, dead, tensor, {
                d: split[(name, d)]
                for d in dead if (name, d) in split
            })
            if list(dead) == [0] and tensor.is_contiguous():
                index = torch.tensor(sorted(dead[0]), dtype=torch.long,
                                     device=tensor.device)
                self.rows.append((tensor, index))
            else:
                self.entries.append((tensor, mask))
            if isinstance(tensor, nn.Parameter):
                self.param_masks[tensor] = mask

    def __bool__(self) -> bool:
        return bool(self.entries or self.rows)

    @torch.no_grad()
    def zero_tensors(self) -> None:
        """Zero removed entries of parameters and buffers."""
        for tensor, mask in self.entries:
            tensor.mul_(mask)
        for tensor, index in self.rows:
            tensor.index_fill_(0, index, 0)

    @torch.no_grad()
    def zero_grads(self) -> None:
        """Zero removed entries of the parameters' gradients."""
        for param, mask in self.param_masks.items():
            if param.grad is not None:
                param.grad.mul_(mask)

    @torch.no_grad()
    def zero_optimizer_state(self, optimizer: torch.optim.Optimizer) -> None:
        """Zero removed entries of per-parameter optimizer state tensors."""
        for param, mask in self.param_masks.items():
            state = optimizer.state.get(param)
            if not state:
                continue
            for value in state.values():
                if torch.is_tensor(value) and value.shape == param.shape:
                    value.mul_(mask.to(value.dtype))
