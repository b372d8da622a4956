"""Randomise every parameter and buffer, so that equivalence tests cannot
pass on trivial values (unit norm weights, zero biases and layer scales,
BN statistics of 0 and 1)."""
import math

import torch
from torch import nn


@torch.no_grad()
def randomise_(model: nn.Module, seed: int = 0, scale: float = 0.5
               ) -> nn.Module:
    """Fill every floating parameter and buffer of ``model`` in place.

    Running variances get values in [0.5, 1.5), weights of two or more
    dims normal values of std ``scale / sqrt(fan_in)`` (so that deep nets
    stay finite), everything else (norm weights and biases, biases, layer
    scales, running means) normal values of std ``scale``.

    Returns:
        nn.Module: ``model``.
    """
    gen = torch.Generator().manual_seed(seed)
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    for name, tensor in tensors:
        if not tensor.is_floating_point():
            continue
        if name.endswith('running_var'):
            value = torch.rand(tensor.shape, generator=gen) + 0.5
        else:
            fan_in = tensor[0].numel() if tensor.dim() > 1 else 1
            value = torch.randn(tensor.shape, generator=gen) * (
                scale / math.sqrt(fan_in))
        tensor.copy_(value.to(tensor.dtype))
    return model
