"""What a model costs with some units removed: parameters, FLOPs, a latency
proxy (:class:`CostModel`) or measured latency (:class:`LatencyCost`)."""
from mmcpd.prune.cost.build import model_cost
from mmcpd.prune.cost.latency import LatencyCost
from mmcpd.prune.cost.model import ACT_WEIGHT, COUNTED, METRICS, CostModel

__all__ = [
    'ACT_WEIGHT', 'COUNTED', 'METRICS', 'CostModel', 'LatencyCost',
    'model_cost'
]
