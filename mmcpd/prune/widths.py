"""Which widths a pruned group may keep, so that pruning never slows down.

Fewer FLOPs is not lower latency when a width falls off the vectorised
kernels. onnxruntime's CPU provider (and MLAS, and oneDNN alike) runs
convolutions in an NCHWc layout, on blocks of 8 channels (AVX2; 16 with
AVX-512). Measured with onnxruntime 1.32 on AVX2 (``mmcpd.deploy.profile``
and the optimised graphs):

* a convolution whose channel count is not a multiple of 4 is left in
  NCHW, and the feature maps are reordered into and out of the blocked
  layout around it; a depthwise convolution on that path runs several
  times slower than its NCHWc kernel;
* a grouped convolution runs in NCHWc only when the channels of each of
  its groups are a multiple of the block (8), so 16 per group pruned to 12
  falls back too (RegNet, ResNeXt-like blocks);
* a squeeze-excitation (or any gate) whose width falls back forces its
  whole feature map out of the blocked layout for the multiplication.

With 30% of every group removed at free widths, MobileNetV3-S-050 ran at
0.16x the original's speed and RegNetX-400MF at 0.70x (1 thread,
interleaved); with the rule below both are faster than the original.

The rule (:func:`width_quanta`), per prunable group, as the multiple of
the group's root channels it keeps:

* a group of at least ``round_to`` channels keeps a multiple of
  ``round_to`` (a group narrower than that is free: there is nothing to
  align);
* a member that is a grouped (not depthwise) convolution's input or output
  whose original per-group width is a multiple of the block
  ``max(round_to, ROUND_TO)`` keeps a multiple of that block per group
  (the unit count that gives it): onnxruntime runs a grouped convolution
  in NCHWc only with whole blocks of 8 per group, so ``round_to=4`` would
  let RegNet's 16 per group fall to 12 and out of the blocked layout; a
  per-group width that was not aligned (ResNeXt's 4) adds nothing;
* a unit that owns several channels (an attention head) counts with all
  of them: heads of 64 channels are free to go one by one.

A group that cannot be pruned under its multiple (all of its channels fit
in one multiple) is kept whole, and named by :func:`whole_groups`; never
is a group rounded up to its full width in silence.

``round_to='measured'`` (:data:`MEASURED`) decides the multiple per group
from this machine's timings instead (:func:`measured_rule`), and
``min_channels='measured'`` the floor: a fixed 8 costs accuracy where it
buys nothing. Measured with onnxruntime 1.32 on a 2-core AVX2 machine
(one-layer graphs, each node's fastest run, 1 thread), the kernels differ
per layer:

* a 3x3 conv's *output* width runs padded to the next multiple of 8 (64
  input channels at 16x16: 1-8 outputs 62 us, 9-16 72 us, 17-24 84 us):
  a width off the multiples costs the next multiple's time;
* its *input* width and a depthwise conv's width run in NCHWc at
  multiples of 4 and fall back to NCHW otherwise (a depthwise conv of 44
  channels 10 us, of 45 channels 49 us);
* a 1x1 conv of 96 inputs at 8x8 runs 7 to 20 us over 1 to 96 outputs:
  its steps are at the profiler's 1-us resolution, nothing to buy;
* a layer's narrowest widths cost the same (a 3x3 conv's 1 to 8 outputs),
  while a layer fed by them keeps getting faster (its 1 to 8 inputs: 15 to
  31 us): a group of both is faster at every narrower width.

AVX-512 machines block by 16, so the rule is measured, not assumed. See
:func:`measured_quantum` and :func:`measured_floor` for the rule.
"""
import dataclasses
import math
import warnings
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from torch import nn

from mmcpd.comb.group import CoupledGroup
from mmcpd.prune.surgery.positions import unit_channels

#: The default channel multiple: the NCHWc block of AVX2 CPUs and a
#: multiple of the tensor-core tile on GPUs.
ROUND_TO = 8

Quanta = Union[int, Mapping[int, int]]

#: The value of ``round_to`` and ``min_channels`` that decides them per
#: group from the measured latency table (:func:`measured_rule`).
MEASURED = 'measured'
#: The multiples the measured rule chooses from, finest first; the last is
#: the coarsest block of the CPUs' kernels (AVX-512's 16 floats).
QUANTA = (1, 2, 4, 8, 16)
#: An unaligned width is "not measurably slower" when its group's layers
#: take at most this fraction of the aligned width above it more than the
#: straight line between its aligned neighbours (plus the timer's
#: resolution per layer). A kernel padded to 8 channels sits half a step
#: above that line between multiples, 8 / w / 2 of its time at width w
#: (12% at 32 channels, 3% at 128: wider, the padding is not worth a
#: rule). 5% let a CIFAR ResNet-18/4 group of 64 channels keep 12 (87 us
#: against 88 us at 16 and 67 us at 8), which ran 3% slower than 8 in the
#: model.
WIDTH_TOL = 0.03
#: onnxruntime's profiler reports node times in whole microseconds: a
#: layer's fastest run is within half of one of its true time.
RESOLUTION_MS = 0.5e-3


def _grouped_convs(model: nn.Module) -> Dict[str, nn.Conv2d]:
    """Weights of the grouped, non-depthwise convolutions, by name."""
    out = {}
    for name, module in model.named_modules():
        if (isinstance(module, nn.modules.conv._ConvNd) and module.groups > 1
                and module.groups != module.in_channels):
            out[f'{name}.weight' if name else 'weight'] = module
    return out


def group_quantum(group: CoupledGroup,
                  grouped: Mapping[str, nn.Module],
                  round_to: int = ROUND_TO) -> int:
    """The multiple of the group's root channels that it keeps.

    Args:
        group (CoupledGroup): A prunable group.
        grouped (Mapping[str, nn.Module]): Grouped convolutions by weight
            name (:func:`_grouped_convs`).
        round_to (int): The channel block. Defaults to ``ROUND_TO``.

    Returns:
        int: The kept root channels are a multiple of this (1: free).
    """
    if round_to <= 1:
        return 1
    counts = unit_channels(group)
    quantum = round_to if sum(counts) >= round_to else 1
    if len(set(counts)) != 1:  # units of mixed widths: root channels only
        return quantum
    per_unit = counts[0]
    block = max(round_to, ROUND_TO)  # a grouped conv's NCHWc block
    units = 1  # kept units are a multiple of this
    for member in group.members:
        conv = grouped.get(member.name)
        if conv is None or member.role not in ('in', 'out'):
            continue
        full = conv.weight.shape[member.dim] * member.groups
        # out rows, or input channels over all conv groups: per conv group
        parts = conv.groups if member.role == 'out' or \
            member.groups > 1 else 1
        width = full // parts
        if (member.size != full or width < block or width % block):
            continue  # not aligned to begin with: nothing to keep
        need = parts * block  # kept channels of this member
        step = need // math.gcd(need, member.counts[0])
        units = units * step // math.gcd(units, step)
    return math.lcm(quantum, units * per_unit)


def width_quanta(model: nn.Module,
                 groups: Sequence[CoupledGroup],
                 round_to: int = ROUND_TO) -> Dict[int, int]:
    """:func:`group_quantum` of every group, by group id.

    Args:
        model (nn.Module): The model the groups were combed from.
        groups (Sequence[CoupledGroup]): The prunable groups.
        round_to (int): The channel block; 1 leaves every width free.
            Defaults to ``ROUND_TO``.

    Returns:
        dict[int, int]: Group id -> multiple of root channels it keeps.
    """
    if not isinstance(round_to, int) or round_to < 1:
        raise ValueError(f'`round_to` should be a positive int, but got '
                         f'{round_to!r}')
    grouped = _grouped_convs(model) if round_to > 1 else {}
    return {g.id: group_quantum(g, grouped, round_to) for g in groups}


def quantum_of(quanta: Quanta, group_id: int) -> int:
    """The multiple for one group: ``quanta`` is one int for all, or a
    mapping by group id (missing ids are free)."""
    if isinstance(quanta, int):
        return quanta
    return int(quanta.get(group_id, 1))


def mixed_prefix(channels: Sequence[int], order: Sequence[int],
                 ratio: float, quantum: int) -> int:
    """How many units of ``order`` go from a group whose units differ in
    width (a split with a remainder, ShuffleNet V1's gathered slabs): the
    prefix that keeps the multiple of ``quantum`` root channels nearest to
    ``1 - ratio`` of them, as :func:`~mmcpd.prune.selection.select_units`
    keeps them; 0 where no prefix keeps such a multiple (or all but none).

    Args:
        channels (Sequence[int]): Root channels of each unit.
        order (Sequence[int]): Units, the first to go first.
        ratio (float): Fraction of the channels to remove.
        quantum (int): Multiple of root channels to keep.
    """
    total = sum(channels)
    target = (1 - ratio) * total
    kept, best = total, None
    for i, u in enumerate(order[:-1]):
        kept -= channels[u]
        if kept % quantum == 0 and (best is None
                                    or abs(kept - target) < best[0]):
            best = (abs(kept - target), i + 1)
    return best[1] if best else 0


def units_to_remove(group: CoupledGroup, ratio: float,
                    quantum: int) -> int:
    """How many units go when ``ratio`` of the group's units should.

    The kept root channels are rounded to the nearest multiple of
    ``quantum``; rounding up to the full width is not allowed (it rounds
    down instead), and a group whose every channel fits in one multiple
    keeps all (:func:`whole_groups` names these).

    Args:
        group (CoupledGroup): A prunable group.
        ratio (float): Fraction of its units to remove, in (0, 1).
        quantum (int): Multiple of root channels to keep.

    Returns:
        int: Units to remove, the lowest-ranked first (0: none).
    """
    counts = unit_channels(group)
    n = group.num_units
    keep = max(1, n - int(ratio * n))
    if quantum <= 1 or len(set(counts)) != 1 or quantum % counts[0]:
        return n - keep  # units of mixed widths: left free
    step = quantum // counts[0]  # in units
    kept = int(round(keep / step)) * step
    if kept >= n:
        kept = (n - 1) // step * step
    if kept <= 0:
        kept = step if step < n else n
    return n - kept


def whole_groups(groups: Sequence[CoupledGroup], quanta: Quanta) -> list:
    """The groups that the width rule keeps whole (one multiple or less)."""
    return [
        g for g in groups
        if sum(unit_channels(g)) <= quantum_of(quanta, g.id)
        and quantum_of(quanta, g.id) > 1
    ]


def warn_whole(groups: Sequence[CoupledGroup], quanta: Quanta) -> list:
    """Warn about the groups that the rule keeps whole; returns them."""
    whole = whole_groups(groups, quanta)
    if whole:
        names = ', '.join(g.root for g in whole[:5])
        warnings.warn(
            f'{len(whole)} prunable groups are kept whole: their channels '
            f'fit in one width multiple (e.g. {names}); `round_to=1` frees '
            'their widths')
    return whole


def measured_floor(widths: Sequence[int], ms: Sequence[float],
                   layers: int = 1, tol: float = WIDTH_TOL) -> int:
    """The narrowest width worth keeping: the widest of ``widths`` (up to
    ``QUANTA[-1]``) than which no narrower width is measurably faster.

    A width ``w`` qualifies when :math:`\\min_{v<w} T(v) \\ge T(w) -
    \\mathrm{tol}\\,T(w) - n\\,r` (:math:`n` layers timed at the
    profiler's resolution :math:`r`). A padded 3x3 conv's 1 to 8 outputs
    cost the same (floor 8); fed to a conv whose inputs keep getting faster
    the group's floor is 1.

    Args:
        widths (Sequence[int]): Measured widths of the group.
        ms (Sequence[float]): The group's layers' time at each, ms.
        layers (int): Layers summed in ``ms``. Defaults to 1.
        tol (float): Relative tolerance. Defaults to ``WIDTH_TOL``.

    Returns:
        int: The floor (1: narrower is always faster).
    """
    floor, low = 1, float('inf')
    for w, t in sorted(zip(widths, ms)):
        if w > QUANTA[-1]:
            break
        if low >= t * (1 - tol) - RESOLUTION_MS * layers:
            floor = w
        low = min(low, t)
    return int(floor)


def measured_quantum(widths: Sequence[int], ms: Sequence[float],
                     floor: int = 1, full: Optional[int] = None,
                     layers: int = 1, tol: float = WIDTH_TOL) -> int:
    """The smallest multiple of ``QUANTA`` whose unaligned widths are not
    measurably slower than their aligned neighbours.

    Aligned widths are the measured multiples of ``QUANTA[-1]``, the
    ``floor`` and the ``full`` width. A width ``w >= floor`` between aligned
    neighbours ``lo < w < hi`` is not measurably slower when

    .. math::

        T(w) \\le T(lo) + (T(hi) - T(lo)) \\frac{w - lo}{hi - lo}
            + \\mathrm{tol}\\, T(hi) + n\\,r,

    the straight line between them: it costs what its channels say, so a
    FLOPs or latency-proxy ranking buys what it pays for. A quantum ``q``
    is chosen when every measured multiple of ``q`` passes: a kernel padded
    to 8 channels fails ``q`` = 1, 2, 4 (its widths off the multiples of 8
    cost the next multiple's time) and passes 8; a kernel linear in the
    width passes ``q`` = 1.

    Args:
        widths (Sequence[int]): Measured widths of the group.
        ms (Sequence[float]): The group's layers' time at each, ms.
        floor (int): Narrower widths are not tested. Defaults to 1.
        full (int, optional): The unpruned width (aligned). Defaults to
            None.
        layers (int): Layers summed in ``ms``. Defaults to 1.
        tol (float): Relative tolerance. Defaults to ``WIDTH_TOL``.

    Returns:
        int: One of ``QUANTA``.
    """
    times = dict(zip(widths, ms))
    anchors = sorted(w for w in times if w >= floor and (
        w % QUANTA[-1] == 0 or w in (floor, full)))
    for q in QUANTA[:-1]:
        passed = True
        for w in sorted(times):
            if w < floor or w % q or w in anchors:
                continue
            lower = [a for a in anchors if a < w]
            upper = [a for a in anchors if a > w]
            if not lower or not upper:
                continue
            lo, hi = lower[-1], upper[0]
            line = times[lo] + (times[hi] - times[lo]) * (w - lo) / (hi - lo)
            if times[w] > line + tol * times[hi] + RESOLUTION_MS * layers:
                passed = False
                break
        if passed:
            return q
    return QUANTA[-1]


def _axis(member) -> Optional[str]:
    return {0: 'out', 1: 'in'}.get(member.dim) \
        if member.role in ('in', 'out') else None


def measured_curve(group: CoupledGroup, layers: Mapping[str, dict]
                   ) -> Tuple[Optional[Tuple[List[int], List[float], int]],
                              bool]:
    """The summed time of the group's tabled layers at its measured widths.

    A layer counts when the group spans its whole input or output (one
    channel a unit, not a grouped, non-depthwise conv) and the table
    measured that axis (``widths`` of
    :func:`mmcpd.deploy.latency_table.latency_table`).

    Returns:
        tuple: ``(widths, ms, layers)`` or None when no layer counts, and
        whether a tabled layer of the group could not count (a slice of a
        concatenation, a grouped conv, units of several channels).
    """
    counts = unit_channels(group)
    total = sum(counts)
    summed: Dict[int, float] = {}
    used, other = 0, False
    for member in group.members:
        layer = layers.get(member.name)
        axis = _axis(member)
        if layer is None or axis is None:
            continue
        window = (layer.get('widths') or {}).get(axis)
        grouped = layer.get('groups', 1) not in (1, 'depthwise')
        if (window is None or grouped or set(counts) != {1}
                or member.size != total or layer[axis] != total):
            other = True
            continue
        calls = int(layer.get('calls', 1))
        if used and set(window['w']) != set(summed):
            other = True
            continue
        for w, t in zip(window['w'], window['ms']):
            summed[int(w)] = summed.get(int(w), 0.0) + calls * float(t)
        used += 1
    if not used:
        return None, other
    widths = sorted(summed)
    return (widths, [summed[w] for w in widths], used), other


def measured_rule(model: nn.Module,
                  groups: Sequence[CoupledGroup],
                  table: dict,
                  min_channels: Union[int, str] = MEASURED
                  ) -> Tuple[Dict[int, int], Dict[int, int]]:
    """Per group, the multiple (:func:`measured_quantum`) and the floor
    (:func:`measured_floor`) from the measured table's width windows.

    A group none of whose layers the windows cover keeps the fixed rule's
    multiple (:func:`group_quantum` with ``ROUND_TO``) and no floor; one
    with a layer they cannot cover (a grouped conv, a slice) keeps the
    least common multiple of both. Where ``min_channels`` (an int) lets a
    group go under its floor, its multiple is coarsened to the first of
    ``QUANTA`` at or above the floor: a width under the floor is no faster,
    so it is never kept (a padded kernel's 16-channel group is not cut to
    2 because its 2 channels count fewer FLOPs).

    Args:
        model (nn.Module): The model the groups were combed from.
        groups (Sequence[CoupledGroup]): The prunable groups.
        table (dict): Its latency table, measured with ``widths=True``.
        min_channels (int | str): The floor the selection keeps:
            ``'measured'`` (the floors returned) or an int. Defaults to
            ``'measured'``.

    Returns:
        tuple[dict, dict]: Group id -> multiple of root channels; group id
        -> channels kept at least.

    Raises:
        ValueError: The table has no width windows.
    """
    layers = {layer['param']: layer for layer in table.get('layers', ())}
    if not any(layer.get('widths') for layer in layers.values()):
        raise ValueError(
            f"`round_to`/`min_channels`={MEASURED!r} need a latency table "
            'with width windows (mmcpd.deploy.latency_table.latency_table('
            '..., widths=True)), but the table has none')
    grouped = _grouped_convs(model)
    quanta, floors = {}, {}
    for group in groups:
        fixed = group_quantum(group, grouped, ROUND_TO)
        curve, other = measured_curve(group, layers)
        if curve is None:
            quanta[group.id], floors[group.id] = fixed, 1
            continue
        widths, ms, used = curve
        floor = measured_floor(widths, ms, used)
        quantum = measured_quantum(widths, ms, floor,
                                   sum(unit_channels(group)), used)
        if min_channels != MEASURED and min_channels < floor:
            quantum = max(quantum,
                          min([q for q in QUANTA if q >= floor]
                              or [QUANTA[-1]]))
        quanta[group.id] = math.lcm(quantum, fixed) if other else quantum
        floors[group.id] = floor
    return quanta, floors


def describe(value) -> str:
    """A width limit as a message shows it: an int, or a measured mapping
    as its range."""
    if isinstance(value, Mapping):
        values = sorted(set(value.values())) or [1]
        return f"{MEASURED!r} ({values[0]} to {values[-1]} by group)"
    return repr(value)


def with_quanta(guards, model: nn.Module, groups: Sequence[CoupledGroup],
                table: Optional[dict] = None):
    """``guards`` (:class:`~mmcpd.prune.selection.Guards`) with the width
    rule's multiple of every group (:func:`width_quanta` of its
    ``round_to``); a ``round_to`` or ``min_channels`` of ``'measured'``
    becomes the per-group mapping of :func:`measured_rule` (from
    ``table``)."""
    measured = MEASURED in (guards.round_to, guards.min_channels)
    if not measured:
        quanta = width_quanta(model, groups, guards.round_to)
        warn_whole(groups, quanta)
        return dataclasses.replace(guards, quanta=quanta)
    if not isinstance(table, dict) or 'layers' not in table:
        raise ValueError(
            f"`round_to`/`min_channels`={MEASURED!r} need the model's "
            'latency table measured with `widths=True`, but got none')
    measured_quanta, floors = measured_rule(model, groups, table,
                                            guards.min_channels)
    changes = {}
    if guards.round_to == MEASURED:
        quanta = measured_quanta
        changes['round_to'] = quanta
    else:
        quanta = width_quanta(model, groups, guards.round_to)
    if guards.min_channels == MEASURED:
        changes['min_channels'] = floors
    warn_whole(groups, quanta)
    return dataclasses.replace(guards, quanta=quanta, **changes)
