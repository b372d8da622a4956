"""What a model costs, in parameters or FLOPs, with some units removed."""
from typing import Dict, Iterable, Mapping, Optional, Sequence, Set, Tuple

import torch

from mmcpd.comb.group import CoupledGroup

Removed = Mapping[int, Iterable[int]]


class CostModel:
    """Counts the parameters or multiply-accumulates left after pruning.

    Each parameter element costs 1 (``metric='params'``) or the number of
    multiply-accumulates it takes part in per forward pass
    (``metric='flops'``, from the comb's ``param_macs``; parameters that the
    traced forward never used cost nothing). A parameter with some indices
    of some dimensions removed keeps ``prod_d alive_d`` elements.

    Args:
        shapes (Mapping[str, Sequence[int]]): Shape of every parameter.
        groups (Sequence[CoupledGroup]): All groups of the comb result.
        metric (str): ``'params'`` or ``'flops'``. Defaults to ``'params'``.
        param_macs (Mapping[str, int], optional): MACs per element of each
            parameter; needed for ``'flops'``.
    """

    def __init__(self,
                 shapes: Mapping[str, Sequence[int]],
                 groups: Sequence[CoupledGroup],
                 metric: str = 'params',
                 param_macs: Optional[Mapping[str, int]] = None):
        if metric not in ('params', 'flops'):
            raise ValueError("`metric` should be 'params' or 'flops', but "
                             f'got {metric!r}')
        if metric == 'flops' and param_macs is None:
            raise ValueError("metric='flops' needs the comb's `param_macs`")
        self.metric = metric
        self.shapes = {k: tuple(v) for k, v in shapes.items()}
        if metric == 'params':
            self.weights = {k: 1.0 for k in self.shapes}
        else:
            self.weights = {
                k: float(param_macs.get(k, 0))
                for k in self.shapes
            }
        self.groups = {g.id: g for g in groups}
        # member.units is computed on access: keep it once per member
        self._units = {(g.id, i): m.units
                       for g in groups for i, m in enumerate(g.members)}

    def removed_indices(self,
                        removed: Removed) -> Dict[Tuple[str, int], Set[int]]:
        """Removed positions per ``(parameter, dim)``."""
        out: Dict[Tuple[str, int], Set[int]] = {}
        for gid, units in removed.items():
            group = self.groups[int(gid)]
            for i, member in enumerate(group.members):
                if member.name not in self.shapes:
                    continue
                dead = out.setdefault((member.name, member.dim), set())
                member_units = self._units[(group.id, i)]
                for u in units:
                    dead.update(member_units[u])
        return out

    def _alive(self, removed: Removed) -> Dict[str, list]:
        alive = {k: list(v) for k, v in self.shapes.items()}
        for (name, dim), dead in self.removed_indices(removed).items():
            alive[name][dim] = self.shapes[name][dim] - len(dead)
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
        return total

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
                                     dtype=torch.float64)
                costs += sizes * rest
            out[gid] = costs
        return out


def model_cost(model: torch.nn.Module, result, metric: str) -> CostModel:
    """The :class:`CostModel` of ``model`` in ``metric`` for its comb result.

    Args:
        model (nn.Module): The model the comb result was found on.
        result (CombResult): Its comb result (``param_macs`` for FLOPs).
        metric (str): ``'params'`` or ``'flops'``.

    Raises:
        ValueError: FLOPs are asked for but the comb result has no
            ``param_macs``.
    """
    shapes = {k: v.shape for k, v in model.named_parameters()}
    macs = getattr(result, 'param_macs', None)
    if metric == 'flops' and not macs:
        raise ValueError("metric='flops' needs FLOPs per parameter "
                         '(`param_macs`) from the comb result')
    return CostModel(shapes, result.groups, metric,
                     macs if metric == 'flops' else None)
