"""The cost model of a metric, built from a model and its comb result."""
from typing import Mapping, Optional, Union

import torch

from mmcpd.prune.cost.latency import LatencyCost
from mmcpd.prune.cost.model import ACT_WEIGHT, CostModel


def model_cost(model: torch.nn.Module,
               result,
               metric: str,
               act_weight: float = ACT_WEIGHT,
               table: Optional[dict] = None,
               round_to: Union[int, Mapping[int, int]] = 1) -> CostModel:
    """The :class:`CostModel` of ``model`` in ``metric`` for its comb result.

    Args:
        model (nn.Module): The model the comb result was found on.
        result (CombResult): Its comb result (``param_macs`` for FLOPs,
            ``channel_acts`` too for the latency proxy).
        metric (str): One of ``METRICS``.
        act_weight (float): MACs per written activation element in the
            ``'latency_proxy'`` cost. Defaults to ``ACT_WEIGHT``.
        table (dict, optional): The model's latency table, for
            ``'latency'`` (:func:`mmcpd.deploy.latency_table.latency_table`).
        round_to (int | Mapping[int, int]): Widths ``'latency'`` allows are
            multiples of it (per group id for a mapping). Defaults to 1.

    Raises:
        ValueError: FLOPs are needed but the comb result has no
            ``param_macs``.
    """
    shapes = {k: v.shape for k, v in model.named_parameters()}
    macs = getattr(result, 'param_macs', None)
    if metric != 'params' and not macs:
        raise ValueError(f"metric={metric!r} needs FLOPs per parameter "
                         '(`param_macs`) from the comb result')
    if metric == 'latency':
        if table is None:
            raise ValueError("metric='latency' needs a latency table "
                             '(mmcpd.deploy.latency_table)')
        return LatencyCost(shapes, result.groups, table, macs,
                           getattr(result, 'channel_acts', None),
                           getattr(result, 'op_macs', ()), round_to,
                           act_weight)
    return CostModel(shapes, result.groups, metric,
                     macs if metric != 'params' else None,
                     getattr(result, 'channel_acts', None), act_weight,
                     getattr(result, 'op_macs', ()))
