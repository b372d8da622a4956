"""Check groups by pruning them for real, and freeze those that break.

The tracer sees torch ops, not the Python arithmetic around them: code such
as ``head_dim = C // self.num_heads`` with ``C`` read off the residual width
ties widths that no op ties. So each group is tried: one unit is removed
physically and the output is compared with the masked model's (zeroed
channels, exact norms). When all groups pass together, one trial is enough;
otherwise bisection finds the groups that break the model or change its
output, and they are frozen with the reason.

Every forward that is compared runs from the same random state
(:func:`same_random`): a model that draws random numbers in eval mode
(SegNeXt's Hamburger head starts its matrix decomposition from
``torch.rand`` bases on every call) would otherwise differ from itself, and
every group would fail.
"""
import contextlib
import copy
import dataclasses
from typing import (Any, Callable, Dict, Iterator, List, Optional, Sequence,
                    Tuple)

import torch
from torch import nn

from mmcpd.comb import CombResult
from mmcpd.comb.trace import default_forward, flat_tensors
from mmcpd.prune.surgery.mask import exact_norms, zero_units
from mmcpd.prune.surgery.physical import prune_units


def outputs_match(a, b, rtol: float = 1e-3) -> Tuple[bool, float]:
    """Same structure and shapes, and values within ``rtol`` of the scale.

    A NaN in either never matches (the difference is ``inf``): a NaN
    output says nothing of the cut, and ``max`` with a NaN would hide it.
    Infinities match where both have the same one; the scale is that of
    the finite values.

    Returns:
        tuple: Whether they match, and the largest difference relative to
        the largest finite magnitude of ``a``.
    """
    fa, fb = flat_tensors(a), flat_tensors(b)
    if len(fa) != len(fb):
        return False, float('inf')
    worst = 0.0
    for x, y in zip(fa, fb):
        if x.shape != y.shape:
            return False, float('inf')
        if x.is_floating_point() or y.is_floating_point():
            if bool(x.isnan().any()) or bool(y.isnan().any()):
                return False, float('inf')
            finite = x.isfinite() & y.isfinite()
            if not torch.equal(x[~finite], y[~finite]):
                return False, float('inf')
            x, y = x[finite], y[finite]
        if not x.numel():
            continue
        scale = x.abs().max().item() + 1e-12
        worst = max(worst, (x - y).abs().max().item() / scale)
    return worst <= rtol, worst


@contextlib.contextmanager
def same_random(seed: int = 0) -> Iterator[None]:
    """Run the body from torch's random state ``seed`` and restore the
    state after, so that two forwards that draw random numbers of the same
    shapes draw the same ones.

    Channels that meet a random tensor are frozen by the comb (it is made
    from nothing), so a masked and a pruned model draw tensors of the same
    shapes and, under this context, the same values.

    ``torch.manual_seed`` seeds every CUDA device too, so their states are
    forked as well: without it, each call would leave every GPU's generator
    at ``seed`` (the same dropout masks and random draws on every rank
    after each comb).

    Args:
        seed (int): The seed. Defaults to 0.
    """
    devices = list(range(torch.cuda.device_count())) \
        if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices, device_type='cuda'):
        torch.manual_seed(seed)
        yield


@torch.no_grad()
def masked_output(masked: nn.Module,
                  result: CombResult,
                  removed: Dict[int, Sequence[int]],
                  inputs: Any,
                  forward_fn: Callable = default_forward):
    """What the masked model (removed units zeroed) computes: norms and
    channel mixes over the kept channels only (:func:`exact_norms`), from
    the same random state as the forward it is compared with
    (:func:`same_random`)."""
    with exact_norms(masked, result, removed), same_random():
        return forward_fn(masked, inputs)


@torch.no_grad()
def try_removal(model: nn.Module,
                result: CombResult,
                removed: Dict[int, Sequence[int]],
                inputs: Any,
                forward_fn: Callable = default_forward,
                rtol: float = 1e-3) -> Tuple[bool, str]:
    """Remove ``removed`` physically on a copy and compare with masking.

    Returns:
        tuple: ``(ok, why)``; ``why`` says what went wrong.
    """
    was_training = model.training
    model.eval()
    try:
        pruned = copy.deepcopy(model)
        try:
            prune_units(pruned, result, removed)
            with same_random():
                got = forward_fn(pruned, inputs)
        except Exception as e:
            return False, f'pruned model fails: {type(e).__name__}: {e}'
        del pruned
        masked = copy.deepcopy(model)
        zero_units(masked, result, removed)
        expected = masked_output(masked, result, removed, inputs,
                                 forward_fn)
        ok, diff = outputs_match(expected, got, rtol)
        if not ok and any(t.is_floating_point() and bool(t.isnan().any())
                          for t in flat_tensors(expected)):
            return False, ('the masked model outputs NaN, so no cut can be '
                           'checked (uninitialised weights?)')
        if not ok:
            return False, ('pruned model differs from the masked one '
                           f'(relative difference {diff:.2e})')
        return True, ''
    finally:
        model.train(was_training)


#: Tolerance of verification in float64, relative to the output's largest
#: magnitude: far above float64 rounding (1e-12 and less on the zoo), far
#: below inexact masking that float32 hides (OCRNet's object attention
#: over a removed class, before the comb followed classes as tokens:
#: 2e-5 for 3 units, under float32's 1e-3).
RTOL_FLOAT64 = 1e-6
#: Tolerance where the model runs in float32 only.
RTOL_FLOAT32 = 1e-3


def _to_double(value):
    if isinstance(value, torch.Tensor):
        return value.double() if value.is_floating_point() else value
    if isinstance(value, (list, tuple)):
        return type(value)(_to_double(v) for v in value)
    if isinstance(value, dict):
        return {k: _to_double(v) for k, v in value.items()}
    return value


@contextlib.contextmanager
def float_keeps_float64() -> Iterator[None]:
    """Inside, ``Tensor.float()`` leaves a float64 tensor as it is.

    Detection heads cast their box regressions with ``.float()`` (mmdet's
    FCOS and ATSS heads: ``scale(bbox_pred).float()``), a guard for mixed
    precision that would make a float64 model's outputs float32, and its
    verification fall back to float32, where the round-off of a deep
    random model (ATSS with DyHead's six deformable blocks: 1e-2 of the
    output) fails every valid cut."""
    original = torch.Tensor.float

    def float_(self, *args, **kwargs):
        if self.dtype == torch.float64 and not args and not kwargs:
            return self
        return original(self, *args, **kwargs)

    torch.Tensor.float = float_
    try:
        yield
    finally:
        torch.Tensor.float = original


@torch.no_grad()
def in_float64(model: nn.Module, inputs: Any,
               forward_fn: Callable = default_forward):
    """A float64 copy of ``model`` and ``inputs``, or None when the model
    does not run in float64 or its outputs are not all float64 (a model
    that casts to float32 inside, or fails on float64 inputs); the
    ``.float()`` casts of a float64 tensor are left out
    (:func:`float_keeps_float64`)."""
    double = copy.deepcopy(model).double().eval()
    x = _to_double(inputs)
    try:
        with same_random(), float_keeps_float64():
            out = forward_fn(double, x)
    except Exception:  # any failure: verify in float32 instead
        return None
    tensors = [t for t in flat_tensors(out) if t.is_floating_point()]
    if not tensors or any(t.dtype != torch.float64 for t in tensors):
        return None
    return double, x


def verify_groups(model: nn.Module,
                  result: CombResult,
                  inputs: Any,
                  forward_fn: Callable = default_forward,
                  rtol: Optional[float] = None) -> CombResult:
    """Freeze the groups whose removal breaks the model.

    One unit (the first, so that every later index shifts) of every
    prunable group is removed at once; if the pruned model does not compute
    what the masked model does, bisection finds the culprits. Both run in
    float64 where the model does (:func:`in_float64`), so that masking that
    is only nearly exact is caught; else in the model's own precision.

    Args:
        model (nn.Module): The model the groups were traced from.
        result (CombResult): Its groups.
        inputs: The example inputs of ``forward_fn``.
        forward_fn (callable): ``forward_fn(model, inputs)``. Defaults to
            :func:`mmcpd.comb.trace.default_forward`.
        rtol (float, optional): Largest difference relative to the largest
            output magnitude. Defaults to :data:`RTOL_FLOAT64` in float64,
            :data:`RTOL_FLOAT32` otherwise.

    Returns:
        CombResult: ``result`` with the culprits frozen (and a warning per
        culprit); ``result`` itself when all groups pass.
    """
    bad: Dict[int, str] = {}
    double = in_float64(model, inputs, forward_fn)
    if double is not None:
        model, inputs = double
    if rtol is None:
        rtol = RTOL_FLOAT32 if double is None else RTOL_FLOAT64

    def check(ids: List[int]) -> None:
        with float_keeps_float64() if double is not None else \
                contextlib.nullcontext():
            ok, why = try_removal(model, result, {g: [0]
                                                  for g in ids}, inputs,
                                  forward_fn, rtol)
        if ok:
            return
        if len(ids) == 1:
            bad[ids[0]] = why
            return
        half = len(ids) // 2
        before = len(bad)
        check(ids[:half])
        check(ids[half:])
        if len(bad) == before:  # only the combination fails
            for g in ids:
                bad[g] = f'fails together with other groups ({why})'

    ids = [g.id for g in result.prunable]
    if ids:
        check(ids)
    if not bad:
        return result
    groups = tuple(
        dataclasses.replace(g, frozen=f'failed verification: {bad[g.id]}')
        if g.id in bad else g for g in result.groups)
    warnings = list(result.warnings) + [
        f'group {g} ({result.groups[g].root}) failed verification: {why}'
        for g, why in sorted(bad.items())
    ]
    return dataclasses.replace(result, groups=groups, warnings=warnings)


#: Largest magnitude of a parameter that is taken for initialised; float32
#: garbage spans up to 3e38, initialisers and training stay far below.
GARBAGE_MAGNITUDE = 1e6


def _uninitialised(t: torch.Tensor) -> bool:
    """Whether ``t`` holds what ``torch.empty`` left: a NaN or an
    infinity, or a magnitude above :data:`GARBAGE_MAGNITUDE`."""
    return not bool(torch.isfinite(t).all()) or \
        t.abs().max().item() > GARBAGE_MAGNITUDE


@torch.no_grad()
def randomize_model(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every floating parameter and buffer values random init hides.

    Random initialisation leaves many tensors trivial: norm scales at one
    and shifts at zero, zero-initialised scales (layer scale, GRN's gamma,
    the last BN of a residual branch), BatchNorm statistics at zero mean and
    unit variance. A pruning bug that only shows through such a tensor (a
    removed channel that a norm still counts, a scale that should have been
    cut) is invisible until the tensor is non-trivial. Every constant tensor
    ``v`` becomes ``v + |v| * U(-0.5, 0.5)`` (``U(-0.5, 0.5)`` for zeros),
    running variances ``U(0.5, 1.5)``, running means ``N(0, 0.5)``; other
    weights are drawn again from a normal of their own mean and std.
    A tensor of several values, all positive, keeps its sign: each value
    times ``U(0.5, 1.5)``, as a positive constant's. Such a tensor is a size, a
    scale or a variance that the model needs positive (Sparse R-CNN's
    learned proposals ``(cx, cy, w, h)``, 0.5 and 1 by default: a normal
    of their mean and std draws negative widths that mmcv's RoIAlign
    rejects), and a draw across zero would test inputs the model never
    sees, not the cut.
    A parameter that holds uninitialised memory (a NaN or an infinity, or
    a magnitude above :data:`GARBAGE_MAGNITUDE`: Deformable DETR's and
    DINO's ``level_embed`` is ``torch.Tensor(levels, dims)`` until
    ``init_weights``) becomes ``N(0, 1)``, as ``normal_`` would initialise
    it: its own mean and std are whatever the allocator left there, so the
    draws, and whether the model outputs NaN, would depend on what ran
    before in the process. Integer tensors, and buffers that are not
    finite (masks of ``-inf``), are left as they are. The draws come
    from a CPU generator whatever the model's device (a seed gives the same
    draws on every device) and are moved to each tensor's device.

    Args:
        model (nn.Module): Changed in place.
        seed (int): Seed of the draws. Defaults to 0.

    Returns:
        nn.Module: ``model``.
    """
    gen = torch.Generator().manual_seed(seed)
    params = {id(p) for p in model.parameters()}
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    for name, t in tensors:
        if not t.is_floating_point() or t.numel() == 0:
            continue
        garbage = id(t) in params and _uninitialised(t)
        if not garbage and not bool(torch.isfinite(t).all()):
            continue
        uniform = torch.rand(
            t.shape, generator=gen, dtype=torch.float32).to(t.device)
        normal = torch.randn(
            t.shape, generator=gen, dtype=torch.float32).to(t.device)
        if garbage:
            new = normal
        elif name.endswith('running_var'):
            new = 0.5 + uniform
        elif name.endswith('running_mean'):
            new = 0.5 * normal
        elif t.numel() == 1 or bool((t == t.flatten()[0]).all()):
            value = float(t.flatten()[0])
            new = (uniform - 0.5 if abs(value) < 1e-3 else value *
                   (0.5 + uniform))
        elif bool((t > 0).all()):  # stays in its domain (see above)
            new = t.float() * (0.5 + uniform)
        else:
            std, mean = t.float().std(), t.float().mean()
            new = mean + std * normal
        t.copy_(new.to(t.dtype))
    return model


def random_units(result: CombResult, ratio: float = 0.3,
                 seed: int = 0) -> Dict[int, List[int]]:
    """``ratio`` of the units of every prunable group, drawn at random
    (at least one removed, at least one kept)."""
    gen = torch.Generator().manual_seed(seed)
    removed = {}
    for group in result.prunable:
        k = min(max(1, int(group.num_units * ratio)), group.num_units - 1)
        removed[group.id] = sorted(
            torch.randperm(group.num_units, generator=gen)[:k].tolist())
    return removed
