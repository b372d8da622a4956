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
  whose original per-group width is a multiple of ``round_to`` keeps a
  multiple of ``round_to`` channels per group (the unit count that gives
  it); a per-group width that was not aligned (ResNeXt's 4) adds nothing;
* a unit that owns several channels (an attention head) counts with all
  of them: heads of 64 channels are free to go one by one.

A group that cannot be pruned under its multiple (all of its channels fit
in one multiple) is kept whole, and named by :func:`whole_groups`; never
is a group rounded up to its full width in silence.
"""
import dataclasses
import math
import warnings
from typing import Dict, Mapping, Sequence, Union

from torch import nn

from mmcpd.comb.group import CoupledGroup
from mmcpd.prune.surgery.positions import unit_channels

#: The default channel multiple: the NCHWc block of AVX2 CPUs and a
#: multiple of the tensor-core tile on GPUs.
ROUND_TO = 8

Quanta = Union[int, Mapping[int, int]]


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
        if (member.size != full or width < round_to or width % round_to):
            continue  # not aligned to begin with: nothing to keep
        need = parts * round_to  # kept channels of this member
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


def with_quanta(guards, model: nn.Module, groups: Sequence[CoupledGroup]):
    """``guards`` (:class:`~mmcpd.prune.selection.Guards`) with the width
    rule's multiple of every group (:func:`width_quanta` of its
    ``round_to``)."""
    quanta = width_quanta(model, groups, guards.round_to)
    warn_whole(groups, quanta)
    return dataclasses.replace(guards, quanta=quanta)
