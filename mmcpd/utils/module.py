"""Copies of modules."""
import copy

import torch
from torch import nn


@torch.no_grad()
def cpu_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` on the CPU, made without a second copy on
    the model's device: each parameter and buffer is copied straight to the
    CPU (``copy.deepcopy(model).cpu()`` of a CUDA model first allocates the
    whole copy on the GPU)."""
    memo = {}
    for param in model.parameters():
        memo[id(param)] = nn.Parameter(
            param.detach().to('cpu', copy=True),
            requires_grad=param.requires_grad)
    for buffer in model.buffers():
        memo[id(buffer)] = buffer.detach().to('cpu', copy=True)
    return copy.deepcopy(model, memo)
