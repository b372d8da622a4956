"""What a model costs, in parameters or FLOPs, with some units removed."""
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from mmcpd.comb.group import CoupledGroup, Removed
from mmcpd.comb.result import OpMacs
from mmcpd.prune.surgery.positions import removed_counts


#: Default weight of one written activation element in the ``latency``
#: cost, in multiply-accumulates (see :class:`CostModel`). Measured on a
#: 2-core AVX2 CPU with onnxruntime: ranking by this proxy at half the
#: FLOPs raised latency / FLOPs speedup from 0.73 to 0.86 (MobileNetV2),
#: 0.77 to 0.81 (SegFormer-B0), 0.94 to 0.98 (ResNet-50); DeiT-S stayed at
#: 0.97 (docs/deploy.md).
ACT_WEIGHT = 2048.0

#: What a target can count: ``'latency'`` is measured (a latency table,
#: :class:`~mmcpd.prune.cost.latency.LatencyCost`), the others are counted.
METRICS = ('params', 'flops', 'latency_proxy', 'latency')
#: The metrics :class:`CostModel` counts.
COUNTED = METRICS[:3]


class CostModel:
    r"""Counts the parameters, FLOPs or a latency proxy left after pruning.

    Each parameter element costs 1 (``metric='params'``) or the number of
    multiply-accumulates it takes part in per forward pass
    (``metric='flops'``, from the comb's ``param_macs``; parameters that the
    traced forward never used cost nothing). A parameter with some indices
    of some dimensions removed keeps :math:`\prod_d alive_d` elements.
    FLOPs also count the ops without weights (the comb's ``op_macs``:
    attention matmuls, norms, resizes), each :math:`m \prod_d alive_d` over
    the channels of its labelled dims, so that the total is what
    mmengine's counter gives for the deployed forward.

    ``metric='latency_proxy'`` adds to the FLOPs what a roofline model adds for
    memory traffic: every output channel of a conv or linear layer writes
    :math:`n` activation elements (the comb's ``channel_acts``), which the
    norms, activations, adds, resizes and transposes after it read and
    write again, at a cost that does not shrink with the layer's input
    width. With :math:`\beta` (``act_weight``) MACs per element,

    .. math::

        C_{lat} = \sum_{W} \mathrm{MACs}(W) + \beta \sum_{W}
            n_W \cdot c^{out}_W

    On a 2-core AVX2 CPU, SegFormer-B0 spends a third of its onnxruntime
    time in such ops; FLOPs alone rank its wide, cheap-per-FLOP channels
    last (see docs/deploy.md). :math:`\beta` stands for a machine's MAC
    throughput over its memory bandwidth in elements, times the number of
    memory-bound ops that touch an element; the default was measured.

    Args:
        shapes (Mapping[str, Sequence[int]]): Shape of every parameter.
        groups (Sequence[CoupledGroup]): All groups of the comb result.
        metric (str): ``'params'``, ``'flops'`` or ``'latency_proxy'``.
            Defaults to ``'params'``.
        param_macs (Mapping[str, int], optional): MACs per element of each
            parameter; needed for ``'flops'`` and ``'latency_proxy'``.
        channel_acts (Mapping[str, Sequence[int]], optional): ``[dim, n]``
            per weight; used by ``'latency_proxy'``.
        act_weight (float): :math:`\beta`. Defaults to ``ACT_WEIGHT``.
        op_macs (Sequence[OpMacs]): MACs of the ops without weights; used
            by ``'flops'`` and ``'latency_proxy'``. Defaults to ().
    """

    def __init__(self,
                 shapes: Mapping[str, Sequence[int]],
                 groups: Sequence[CoupledGroup],
                 metric: str = 'params',
                 param_macs: Optional[Mapping[str, int]] = None,
                 channel_acts: Optional[Mapping[str, Sequence[int]]] = None,
                 act_weight: float = ACT_WEIGHT,
                 op_macs: Sequence[OpMacs] = ()):
        if metric not in COUNTED:
            raise ValueError(f'`metric` should be one of {COUNTED}, but '
                             f'got {metric!r}')
        if metric != 'params' and param_macs is None:
            raise ValueError(f"metric={metric!r} needs the comb's "
                             '`param_macs`')
        if not isinstance(act_weight, (int, float)) or act_weight < 0:
            raise ValueError('`act_weight` should be a number >= 0, but got '
                             f'{act_weight!r}')
        self.metric = metric
        self.shapes = {k: tuple(v) for k, v in shapes.items()}
        if metric == 'params':
            self.weights = {k: 1.0 for k in self.shapes}
        else:
            self.weights = {
                k: float(param_macs.get(k, 0))
                for k in self.shapes
            }
        #: (parameter, dim) -> cost of one alive index along dim.
        self.linear: Dict[Tuple[str, int], float] = {}
        if metric == 'latency_proxy':
            for name, (dim, per_channel) in (channel_acts or {}).items():
                if name in self.shapes:
                    self.linear[(name, int(dim))] = float(
                        act_weight) * per_channel
        self.ops = tuple(op_macs) if metric != 'params' else ()
        self.groups = {g.id: g for g in groups}

    #: Fraction of the gap to the target that one round of selection may
    #: close before the unit costs are recounted (see ``select_units``).
    round_fraction = 1.0

    def allowed_widths(self, group: CoupledGroup) -> None:
        """Kept widths of ``group`` the cost allows beyond the guards;
        None: any (a measured cost narrows them, see
        :class:`~mmcpd.prune.cost.latency.LatencyCost`)."""
        return None

    def _alive(self, removed: Removed) -> Dict[str, list]:
        alive = {k: list(v) for k, v in self.shapes.items()}
        for (name, dim), gone in removed_counts(self.groups.values(),
                                                removed).items():
            if name in self.shapes:
                alive[name][dim] = self.shapes[name][dim] - gone
        return alive

    def total(self, removed: Optional[Removed] = None) -> float:
        """Cost of the model with ``removed`` units gone."""
        alive = self._alive(removed or {})
        total = 0.0
        for name, dims in alive.items():
            numel = 1
            for d in dims:
                numel *= d
            total += numel * self.weights[name]
        for (name, dim), per_index in self.linear.items():
            total += per_index * alive[name][dim]
        for op, dims in self._op_alive(removed or {}):
            total += op.macs * float(np.prod(dims))
        return total

    def _op_alive(self, removed: Removed):
        """Each op, with the positions kept along each of its dims."""
        gone = {(int(g), int(u)) for g, units in removed.items()
                for u in units}
        for op in self.ops:
            yield op, [
                sum(c for g, u, c in dim if (g, u) not in gone)
                for dim in op.dims
            ]

    def unit_costs(self, removed: Optional[Removed] = None
                   ) -> Dict[int, torch.Tensor]:
        """Cost saved by removing each unit alone, given ``removed``.

        Returns:
            dict[int, Tensor]: float64 vector of ``num_units`` per group.
        """
        alive = self._alive(removed or {})
        out = {}
        for gid, group in self.groups.items():
            costs = torch.zeros(group.num_units, dtype=torch.float64)
            for member in group.members:
                if member.name not in alive:
                    continue
                dims = alive[member.name]
                rest = self.weights[member.name]
                for d, size in enumerate(dims):
                    if d != member.dim:
                        rest *= size
                sizes = torch.tensor(member.counts,
                                     dtype=torch.float64) / member.groups
                costs += sizes * (
                    rest + self.linear.get((member.name, member.dim), 0.0))
            out[gid] = costs
        for op, alive in self._op_alive(removed or {}):
            for d, dim in enumerate(op.dims):
                rest = op.macs * float(np.prod(alive[:d] + alive[d + 1:]))
                for g, u, c in dim:
                    if g in out:
                        out[g][u] += c * rest
        return out
