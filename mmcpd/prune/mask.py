"""Masking: remove channels by zeroing them, keeping every shape.

Zeroing a unit's entries in every member (weights, biases, norm affine and
running statistics) makes its channels exactly zero wherever they flow, so
the masked model computes what the sliced one does, with one exception:
norms whose statistics run over channels. LayerNorm's mean and variance
over ``C`` channels differ from those over the ``C - r`` kept ones even when
the ``r`` removed channels are zero, and so does GroupNorm's over a group
that loses channels. Under :func:`exact_norms` those norms compute their
statistics over the kept channels only (removed channels output zero):
exactly what the physically pruned model computes.
"""
import contextlib
from collections import defaultdict
from typing import Dict, List, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from mmcpd.comb import CombResult
from .physical import removed_indices


@torch.no_grad()
def zero_units(model: nn.Module, result: CombResult,
               removed: Mapping[int, Sequence[int]]) -> None:
    """Zero the removed units' entries of every member, in place."""
    tensors = dict(model.named_parameters())
    tensors.update(model.named_buffers())
    for (name, dim), idx in removed_indices(result, removed).items():
        t = tensors[name]
        index = torch.tensor(sorted(idx), device=t.device)
        t.index_fill_(dim, index, 0)


def kept_channels(result: CombResult,
                  removed: Mapping[int, Sequence[int]]
                  ) -> Dict[str, List[tuple]]:
    """Per norm module: ``(kind, kept channel indices, channel count)``."""
    gone = {(int(g), int(u)) for g, units in removed.items() for u in units}
    sites = defaultdict(list)
    for site in result.norms:
        keep = [i for i, c in enumerate(site.channels) if tuple(c) not in gone]
        if len(keep) < len(site.channels):
            sites[site.module].append((site.kind, keep, len(site.channels)))
    return sites


class _ExactNorms(TorchFunctionMode):
    """Recompute norms of the active module over the kept channels."""

    def __init__(self, sites):
        super().__init__()
        self.sites = sites
        self.active: List[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.active and func in (F.layer_norm, F.group_norm):
            for kind, keep, count in self.sites.get(self.active[-1], ()):
                if kind == func.__name__:
                    return self._exact(func, keep, count, args, kwargs)
        return func(*args, **kwargs)

    @staticmethod
    def _arg(args, kwargs, i, name):
        return args[i] if len(args) > i else kwargs.get(name)

    def _exact(self, func, keep, count, args, kwargs):
        x = args[0]
        weight = self._arg(args, kwargs, 2, 'weight')
        bias = self._arg(args, kwargs, 3, 'bias')
        eps = self._arg(args, kwargs, 4, 'eps') or 1e-5
        dim = -1 if func is F.layer_norm else 1
        if x.shape[dim] != count:  # not the call that was traced
            return func(*args, **kwargs)
        index = torch.tensor(keep, device=x.device)
        xk = x.index_select(dim, index)
        wk = weight.index_select(0, index) if weight is not None else None
        bk = bias.index_select(0, index) if bias is not None else None
        if func is F.layer_norm:
            yk = F.layer_norm(xk, (len(keep), ), wk, bk, eps)
        else:
            groups = self._arg(args, kwargs, 1, 'num_groups')
            per_group = count // groups
            kept_groups = len({i // per_group for i in keep})
            yk = F.group_norm(xk, kept_groups, wk, bk, eps)
        out = torch.zeros_like(x)
        return out.index_copy(dim, index, yk)


@contextlib.contextmanager
def exact_norms(model: nn.Module, result: CombResult,
                removed: Mapping[int, Sequence[int]]):
    """Within this context, masked norms over channels are exact.

    Args:
        model (nn.Module): The masked model (the one ``result`` describes).
        result (CombResult): Its comb result (``result.norms``).
        removed (dict[int, list[int]]): Removed units, by group id.
    """
    sites = kept_channels(result, removed)
    if not sites:
        yield
        return
    mode = _ExactNorms(sites)
    modules = dict(model.named_modules())
    handles = []
    for name in sites:

        def enter(mod, args, name=name):
            mode.active.append(name)

        def leave(mod, args, output):
            mode.active.pop()

        handles.append(modules[name].register_forward_pre_hook(enter))
        handles.append(modules[name].register_forward_hook(leave))
    try:
        with mode:
            yield
    finally:
        for h in handles:
            h.remove()
