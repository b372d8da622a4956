"""Measured latency as a cost: a latency table, interpolated.

The table is plain data (see :func:`mmcpd.deploy.latency_table.latency_table`
for how it is measured); nothing here imports onnxruntime.
"""
import bisect
from typing import Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

import numpy as np
import torch

from mmcpd.comb.group import CoupledGroup, Removed
from mmcpd.comb.result import OpMacs
from mmcpd.prune.cost.model import ACT_WEIGHT, CostModel
from mmcpd.prune.surgery.positions import unit_channels


def monotone(ms: Sequence[Sequence[float]]) -> np.ndarray:
    """Latency that never rises when a width falls: the minimum over all
    at-least-as-wide grid points (a cumulative min from above on both
    axes)."""
    table = np.array(ms, dtype=np.float64)
    table = np.minimum.accumulate(table[::-1], axis=0)[::-1]
    return np.minimum.accumulate(table[:, ::-1], axis=1)[:, ::-1]


def _weights(grid: Sequence[int], width: float):
    """Two grid indices and weights that interpolate ``width`` linearly;
    flat outside the grid."""
    if width <= grid[0] or len(grid) == 1:
        return 0, 0, 1.0
    if width >= grid[-1]:
        return len(grid) - 1, len(grid) - 1, 1.0
    hi = bisect.bisect_left(grid, width)
    lo = hi - 1
    return lo, hi, (grid[hi] - width) / (grid[hi] - grid[lo])


def interpolate(grid_in: Sequence[int], grid_out: Sequence[int],
                ms: np.ndarray, w_in: float, w_out: float) -> float:
    """Bilinear interpolation of a layer's table at (in, out) widths."""
    i0, i1, a = _weights(grid_in, w_in)
    j0, j1, b = _weights(grid_out, w_out)
    return float(a * (b * ms[i0, j0] + (1 - b) * ms[i0, j1]) + (1 - a) *
                 (b * ms[i1, j0] + (1 - b) * ms[i1, j1]))


def _fit_shares(xs: np.ndarray, ys: np.ndarray) -> Tuple[float, float]:
    """Least squares ``ys ~ a xs[:, 0] + b xs[:, 1]`` with a, b >= 0 and
    a + b <= 1: the best of the unconstrained fit and the fits on the
    constraints' edges that are feasible."""
    cands = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)]
    sol = np.linalg.lstsq(xs, ys, rcond=None)[0]
    cands.append((float(sol[0]), float(sol[1])))
    for j in range(2):  # one share only
        den = float(xs[:, j] @ xs[:, j])
        if den > 0:
            v = float(xs[:, j] @ ys) / den
            cands.append((v, 0.0) if j == 0 else (0.0, v))
    d = xs[:, 0] - xs[:, 1]  # a + b = 1: ys - xs1 ~ a (xs0 - xs1)
    if float(d @ d) > 0:
        a = float(d @ (ys - xs[:, 1])) / float(d @ d)
        cands.append((a, 1.0 - a))
    feasible = [(a, b) for a, b in cands
                if a >= -1e-12 and b >= -1e-12 and a + b <= 1 + 1e-9]
    best = min(feasible,
               key=lambda ab: float(np.sum((xs @ np.array(ab) - ys)**2)))
    return max(best[0], 0.0), max(best[1], 0.0)


class LatencyCost(CostModel):
    r"""Measured latency (ms) of the model with some units removed.

    Each conv and linear layer in the table costs its measured time at its
    alive (in, out) widths, interpolated bilinearly between grid widths on
    a table made monotone (:func:`monotone`). What the layers do not explain
    (``rest_ms``: norms, activations, adds, attention matmuls, resizes) is
    scaled by the latency proxy of everything but the tabled weights
    (:class:`CostModel` with ``'latency_proxy'``, the channels' written
    activations and the weightless ops' MACs):

    .. math::

        T = s \Big(\sum_l T_l(c^{in}_l, c^{out}_l)
            + T_{rest} \frac{P_{rest}}{P_{rest}^{full}}\Big)

    with :math:`s` so that the unpruned total is the measured ``model_ms``.
    A group's widths follow the table: with the other groups whole, a kept
    width is allowed only when its tabled layers are strictly faster than
    at every wider allowed width (and it is a multiple of ``round_to``), so
    a width slower than a wider one is never chosen
    (:meth:`allowed_widths`).

    Args:
        shapes (Mapping[str, Sequence[int]]): Shape of every parameter.
        groups (Sequence[CoupledGroup]): All groups of the comb result.
        table (dict): A latency table of this model.
        param_macs (Mapping[str, int]): MACs per element of each parameter.
        channel_acts (Mapping[str, Sequence[int]], optional): ``[dim, n]``
            per weight (the comb's).
        op_macs (Sequence[OpMacs]): MACs of the ops without weights.
            Defaults to ().
        round_to (int | Mapping[int, int]): Widths kept are multiples of
            this; a mapping by group id (missing: 1) for a per-group rule
            (:func:`~mmcpd.prune.widths.measured_rule`). Defaults to 1.
        act_weight (float): :math:`\beta` of the rest's proxy. Defaults to
            ``ACT_WEIGHT``.

    Raises:
        ValueError: The table was measured on another model: names the
            first layer that does not fit.
    """

    #: Measured savings change as widths fall (the tables are not linear):
    #: select in rounds that close half of the gap each.
    round_fraction = 0.5

    def __init__(self,
                 shapes: Mapping[str, Sequence[int]],
                 groups: Sequence[CoupledGroup],
                 table: dict,
                 param_macs: Mapping[str, int],
                 channel_acts: Optional[Mapping[str, Sequence[int]]] = None,
                 op_macs: Sequence[OpMacs] = (),
                 round_to: Union[int, Mapping[int, int]] = 1,
                 act_weight: float = ACT_WEIGHT):
        layers = table.get('layers') if isinstance(table, dict) else None
        if not layers or 'model_ms' not in table:
            raise ValueError('`table` should be a latency table (a dict '
                             'with `layers` and `model_ms`), but got '
                             f'{type(table).__name__}')
        for layer in layers:
            name, want = layer['param'], [layer['out'], layer['in']]
            got = list(shapes.get(name, ()))[:2]
            if got != want:
                raise ValueError(
                    f'the latency table does not fit the model: `{name}` '
                    f'should have (out, in) = {tuple(want)} as measured, '
                    f'but the model has {tuple(got) or "no such weight"}')
        tabled = {layer['param'] for layer in layers}
        rest_macs = {
            k: (0 if k in tabled else v)
            for k, v in param_macs.items()
        }
        super().__init__(shapes, groups, 'latency_proxy', rest_macs,
                         channel_acts, act_weight, op_macs)
        self.metric = 'latency'
        self.machine = dict(table.get('machine') or {})
        self.round_to = dict(round_to) if isinstance(round_to, Mapping) \
            else int(round_to)
        self.layers = [
            dict(param=layer['param'], grid_in=list(layer['grid_in']),
                 grid_out=list(layer['grid_out']), ms=monotone(layer['ms']),
                 calls=int(layer.get('calls', 1)),
                 depthwise=layer.get('groups') == 'depthwise')
            for layer in layers
        ]
        self._by_param = {layer['param']: layer for layer in self.layers}
        self.rest_full = super().total()
        full = self._layers_ms(self._alive({}))
        self.rest_ms = max(float(table.get('rest_ms', 0.0)), 0.0) \
            if self.rest_full > 0 else 0.0
        self.scale = float(table['model_ms']) / (full + self.rest_ms) \
            if full + self.rest_ms > 0 else 1.0
        self.model_ms = float(table['model_ms'])
        # calibration (:meth:`calibrate`): multipliers of the layers' and
        # the rest's ms, and a fixed part (a fraction of the model)
        self.k_layers, self.k_rest, self.fixed = 1.0, 1.0, 0.0
        self._allowed: Dict[int, Optional[Set[int]]] = {}

    def _layer_ms(self, layer: dict, dims: Sequence[int]) -> float:
        w_in = layer['grid_in'][0] if layer['depthwise'] else dims[1]
        return layer['calls'] * interpolate(layer['grid_in'],
                                            layer['grid_out'], layer['ms'],
                                            w_in, dims[0])

    def _layers_ms(self, alive: Mapping[str, List[int]]) -> float:
        return sum(
            self._layer_ms(layer, alive[layer['param']])
            for layer in self.layers)

    def total(self, removed: Optional[Removed] = None) -> float:
        """Predicted latency (ms) with ``removed`` units gone."""
        return self.model_ms * self.fixed + self.scale * (
            self.k_layers * self._layers_ms(self._alive(removed or {})) +
            self.k_rest * self._rest_ms(removed or {}))

    def _rest_ms(self, removed: Removed) -> float:
        return self.rest_ms * super().total(removed) / self.rest_full \
            if self.rest_full > 0 else 0.0

    def shares(self, removed: Optional[Removed] = None) -> tuple:
        """The table's layers and rest with ``removed`` gone, as
        fractions of the unpruned model's (uncalibrated)."""
        removed = removed or {}
        layers = self.scale * self._layers_ms(self._alive(removed))
        return (layers / self.model_ms,
                self.scale * self._rest_ms(removed) / self.model_ms)

    @property
    def calibration(self) -> List[float]:
        """What :meth:`calibrate` fitted, as plain data (for checkpoints):
        the layers' and the rest's multipliers and the fixed part."""
        return [self.k_layers, self.k_rest, self.fixed]

    @calibration.setter
    def calibration(self, value: Sequence[float]) -> None:
        self.k_layers, self.k_rest, self.fixed = (float(v) for v in value)

    def calibrate(self, samples: Sequence[Tuple[Removed, float]]) -> tuple:
        r"""Fit the prediction to measured latency ratios of pruned models.

        With :math:`l, r` the table's layers and rest as fractions of the
        unpruned model (:meth:`shares`; :math:`l_0 + r_0 = 1` unpruned),
        the measured ratio is fitted by least squares as

        .. math::

            \rho = c + a\,l/l_0 + b\,r/r_0, \quad a, b, c \ge 0,\;
            a + b + c = 1,

        :math:`c` being what pruning does not shrink. One-layer timings
        over-credit the layers when :math:`a < l_0`; the ranking then
        weighs the layers by :math:`a/l_0` and the rest by :math:`b/r_0`.
        Neither share goes below a quarter of the table's (a few noisy
        samples must not make a part free); with one sample only the
        table's split is kept and scaled (:math:`a/l_0 = b/r_0`).

        Args:
            samples: ``(removed, measured latency ratio)`` pairs, e.g. the
                model pruned uniformly at a few widths.

        Returns:
            tuple: :math:`(a, b, c)`.
        """
        if not samples:
            raise ValueError('`samples` should be (removed, ratio) pairs, '
                             'but got none')
        l0, r0 = self.shares()
        xs, ys = [], []
        for removed, ratio in samples:
            lay, rest = self.shares(removed)
            xs.append((lay / l0 - 1 if l0 > 0 else 0.0,
                       rest / r0 - 1 if r0 > 0 else 0.0))
            ys.append(float(ratio) - 1)
        xs, ys = np.array(xs), np.array(ys)
        if len(ys) < 2:  # one sample: the table's split, scaled
            x = xs @ np.array([l0, r0])
            s = float(x @ ys) / float(x @ x) if float(x @ x) > 0 else 1.0
            s = min(max(s, 0.0), 1.0)
            a, b = s * l0, s * r0
        else:  # neither part below a quarter of the table's
            a, b = _fit_shares(xs, ys)
            a, b = max(a, l0 / 4), max(b, r0 / 4)
            if a + b > 1:
                a, b = a / (a + b), b / (a + b)
        self.k_layers = a / l0 if l0 > 0 else 1.0
        self.k_rest = b / r0 if r0 > 0 else 1.0
        self.fixed = max(1.0 - a - b, 0.0)
        return a, b, self.fixed

    def quantum(self, group_id: int) -> int:
        """The multiple of root channels that group keeps."""
        if isinstance(self.round_to, int):
            return self.round_to
        return int(self.round_to.get(group_id, 1))

    def _group_curve(self, group: CoupledGroup) -> Dict[int, float]:
        """Kept root channels (multiples of ``round_to``) -> tabled ms of
        the group's layers, removing units from the last, the other groups
        whole."""
        members = [m for m in group.members if m.name in self._by_param]
        gone = {
            m: np.cumsum([0] + list(m.counts[::-1])) // m.groups
            for m in members
        }
        root = np.cumsum([0] + unit_channels(group)[::-1])
        quantum = self.quantum(group.id)
        curve = {}
        for n in range(group.num_units):
            kept = int(root[-1] - root[n])
            if n and kept % quantum:
                continue
            dims = {m.name: list(self.shapes[m.name]) for m in members}
            for m in members:
                dims[m.name][m.dim] -= int(gone[m][n])
            curve[kept] = sum(
                self._layer_ms(self._by_param[k], d)
                for k, d in dims.items())
        return curve

    def allowed_widths(self, group: CoupledGroup) -> Optional[Set[int]]:
        """Kept widths of ``group`` that are faster than every wider one
        (multiples of ``round_to``); None when no tabled layer has it."""
        if group.id in self._allowed:
            return self._allowed[group.id]
        allowed = None
        if any(m.name in self._by_param for m in group.members):
            curve = self._group_curve(group)
            best = float('inf')
            allowed = set()
            for kept in sorted(curve, reverse=True):
                if curve[kept] < best * (1 - 1e-9):
                    allowed.add(kept)
                    best = curve[kept]
        self._allowed[group.id] = allowed
        return allowed

    def unit_costs(self, removed: Optional[Removed] = None
                   ) -> Dict[int, torch.Tensor]:
        """Latency (ms) saved per unit, at the slope of each group's table
        down to its next allowed width (the proxy's for the rest)."""
        removed = removed or {}
        factor = self.k_rest * self.scale * self.rest_ms / self.rest_full \
            if self.rest_full > 0 else 0.0
        out = {
            gid: costs * factor
            for gid, costs in super().unit_costs(removed).items()
        }
        alive = self._alive(removed)
        for gid, group in self.groups.items():
            allowed = self.allowed_widths(group)
            if allowed is None:
                continue
            channels = unit_channels(group)
            gone = set(removed.get(gid, ()))
            kept = sum(c for u, c in enumerate(channels) if u not in gone)
            below = [w for w in allowed if w < kept]
            step = kept - max(below) if below else self.quantum(gid)
            if step <= 0 or kept - step <= 0:
                continue
            total = sum(channels)
            for m in group.members:
                layer = self._by_param.get(m.name)
                if layer is None:
                    continue
                dims = alive[m.name]
                drop = step * sum(m.counts) / total / m.groups
                fewer = list(dims)
                fewer[m.dim] = dims[m.dim] - drop
                slope = (self._layer_ms(layer, dims) -
                         self._layer_ms(layer, fewer)) / drop
                out[gid] += self.k_layers * self.scale * slope * torch.tensor(
                    m.counts, dtype=torch.float64) / m.groups
        return out
