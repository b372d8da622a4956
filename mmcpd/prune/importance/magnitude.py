"""Weight-magnitude importance."""
import torch

from mmcpd.registry import IMPORTANCES
from mmcpd.prune.importance.base import BaseImportance


@IMPORTANCES.register_module(name='magnitude')
class MagnitudeImportance(BaseImportance):
    r"""L2 norm of the weights a unit owns, in every member of its group.

    .. math::

        I_u = \Big(\sum_{m \in \text{members}} \sum_{i \in u_m} w_i^2
              \Big)^{1/2}

    Needs no gradient; computed from the weights at each prune step.

    References:
        Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017.
    """

    def _compute(self) -> torch.Tensor:
        params = self._params()
        with torch.no_grad():
            values = {
                n: params[n].detach().float().square()
                for n in self.units.names if n in params
            }
            return self.units.unit_sums(values)[:-1].sqrt()
