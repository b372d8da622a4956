"""Masking: remove channels by zeroing them, keeping every shape.

Zeroing a unit's entries in every member (weights, biases, norm affine and
running statistics) makes its channels exactly zero wherever they flow, so
the masked model computes what the sliced one does, with one exception: ops
that read all channels at once. LayerNorm's mean and variance over ``C``
channels differ from those over the ``C - r`` kept ones even when the ``r``
removed channels are zero, and so does GroupNorm's over a group that loses
channels, a channel mean (the divisor), a channel max or min (a zero can
win), a softmax over channels (zeros still get weight), a p-norm (its
removed entries need not be zero after a bias or an activation), a local
response norm (its window spans removed channels). Under
:func:`exact_norms` each of these ops recorded by the comb
(``CombResult.norms``) runs on the kept channels only, and removed channels
output zero where the channel dim survives: exactly what the physically
pruned model computes.
"""
import contextlib
from collections import Counter, defaultdict
from typing import Callable, Dict, List, Mapping, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from mmcpd.comb import CombResult, NormSite
from mmcpd.comb.handlers import COUNTED
from mmcpd.comb.trace import op_name
from mmcpd.prune.surgery.dead import DeadUnits


@torch.no_grad()
def zero_units(model: nn.Module, result: CombResult,
               removed: Mapping[int, Sequence[int]]) -> None:
    """Zero the removed units' entries of every member, in place (the
    masks :class:`~mmcpd.prune.surgery.dead.DeadUnits` keeps during
    training)."""
    DeadUnits(model, result.groups, removed).zero_tensors()


class KeptSite(NamedTuple):
    """A norm or mix of one module, and the channels it keeps."""
    site: NormSite
    keep: List[int]

    @property
    def count(self) -> int:
        return len(self.site.channels)


def kept_channels(result: CombResult,
                  removed: Mapping[int, Sequence[int]]
                  ) -> Dict[str, List[KeptSite]]:
    """Per module: its norms and mixes that lose channels, with the kept
    channel indices."""
    gone = {(int(g), int(u)) for g, units in removed.items() for u in units}
    sites = defaultdict(list)
    for site in result.norms:
        keep = [i for i, c in enumerate(site.channels) if tuple(c) not in gone]
        if len(keep) < len(site.channels):
            sites[site.module].append(KeptSite(site, keep))
    return sites


def _arg(args, kwargs, i, name):
    return args[i] if len(args) > i else kwargs.get(name)


class _ExactNorms(TorchFunctionMode):
    """Recompute the recorded norms and mixes of the running module over
    the kept channels."""

    def __init__(self, sites: Dict[str, List[KeptSite]]):
        super().__init__()
        self.sites = sites
        #: the running modules (innermost last) and their calls of
        #: channel-mixing ops so far
        self.active: List[tuple] = []
        #: kept indices as tensors, per site and device: made (and, on a
        #: GPU, copied from the host) once, not at every forward
        self._indices: Dict[tuple, torch.Tensor] = {}

    def index(self, kept: KeptSite, device: torch.device) -> torch.Tensor:
        """``kept.keep`` as a long tensor on ``device``, cached."""
        key = (id(kept), device)
        index = self._indices.get(key)
        if index is None:
            index = self._indices[key] = _index(kept, device)
        return index

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self.active:
            return func(*args, **kwargs)
        name, calls = self.active[-1]
        if func in (F.layer_norm, F.group_norm):
            for kept in self.sites.get(name, ()):
                if kept.site.kind == func.__name__:
                    return _exact_norm(func, kept, args, kwargs,
                                       self.index)
        elif func in COUNTED:
            op = op_name(func)
            index = calls[op]
            calls[op] += 1
            for kept in self.sites.get(name, ()):
                if kept.site.kind == op and kept.site.index == index:
                    return _exact_mix(func, kept, args, kwargs,
                                      self.index)
        return func(*args, **kwargs)


def _index(kept: KeptSite, device: torch.device) -> torch.Tensor:
    return torch.tensor(kept.keep, device=device, dtype=torch.long)


def _exact_norm(func, kept: KeptSite, args, kwargs,
                index_of: Callable = _index):
    """LayerNorm / GroupNorm statistics over the kept channels.

    The output has the dtype the norm gives, which need not be the
    input's: under CUDA autocast, ``layer_norm`` and ``group_norm`` run in
    float32 on float16 inputs.
    """
    keep, count = kept.keep, kept.count
    x = args[0]
    weight = _arg(args, kwargs, 2, 'weight')
    bias = _arg(args, kwargs, 3, 'bias')
    eps = _arg(args, kwargs, 4, 'eps') or 1e-5
    dim = -1 if func is F.layer_norm else 1
    if x.shape[dim] != count:  # not the call that was traced
        return func(*args, **kwargs)
    index = index_of(kept, x.device)
    xk = x.index_select(dim, index)
    wk = weight.index_select(0, index) if weight is not None else None
    bk = bias.index_select(0, index) if bias is not None else None
    if func is F.layer_norm:
        yk = F.layer_norm(xk, (len(keep), ), wk, bk, eps)
    else:
        groups = _arg(args, kwargs, 1, 'num_groups')
        per_group = count // groups
        kept_groups = len({i // per_group for i in keep})
        yk = F.group_norm(xk, kept_groups, wk, bk, eps)
    out = torch.zeros_like(x, dtype=yk.dtype)
    return out.index_copy(dim, index, yk)


def _exact_mix(func, kept: KeptSite, args, kwargs,
               index_of: Callable = _index):
    """The op on the kept channels of its input; zeros for removed channels
    where the channel dim survives."""
    site = kept.site
    x = args[0] if args else kwargs.get('input')
    d = site.dim
    if not isinstance(x, torch.Tensor) or x.dim() <= d or \
            x.shape[d] != kept.count:  # not the call that was traced
        return func(*args, **kwargs)
    index = index_of(kept, x.device)
    xk = x.index_select(d, index)
    if args and args[0] is x:
        args = (xk, ) + tuple(args[1:])
    else:
        kwargs = dict(kwargs, input=xk)
    out = func(*args, **kwargs)
    if not site.keeps_dim:
        return out
    shape = list(out.shape)
    shape[d] = kept.count
    return out.new_zeros(shape).index_copy(d, index, out)


@contextlib.contextmanager
def exact_norms(model: nn.Module, result: CombResult,
                removed: Mapping[int, Sequence[int]]):
    """Within this context, masked norms and mixes over channels are exact.

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
    # the modules with sites and all modules inside them, so that the
    # innermost running module is known, as it was to the tracer
    hooked = [(name, module) for name, module in model.named_modules()
              if any(not s or name == s or name.startswith(s + '.')
                     for s in sites)]
    handles = []
    for name, module in hooked:

        def enter(mod, args, name=name):
            mode.active.append((name, Counter()))

        def leave(mod, args, output):
            mode.active.pop()

        handles.append(module.register_forward_pre_hook(enter))
        handles.append(module.register_forward_hook(leave))
    try:
        with mode:
            yield
    finally:
        for h in handles:
            h.remove()
