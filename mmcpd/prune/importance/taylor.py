"""First-order Taylor importance."""
import torch

from mmcpd.registry import IMPORTANCES
from mmcpd.prune.importance.base import GradImportance


@IMPORTANCES.register_module(name='taylor')
class TaylorImportance(GradImportance):
    r"""Loss change of removing a unit, to first order.

    .. math::

        I_u = \sum_{b=1}^{B} \Big| \sum_{m \in \text{members}}
              \sum_{i \in u_m} w_i \, \frac{\partial L_b}{\partial w_i}
              \Big| ,

    summed over the :math:`B` optimizer steps of a prune interval, with the
    same gradient handling as :class:`HessianImportance`.

    References:
        Molchanov et al., "Pruning Convolutional Neural Networks for
        Resource Efficient Inference", ICLR 2017; Molchanov et al.,
        "Importance Estimation for Neural Network Pruning", CVPR 2019.
    """

    def _per_step(self, sums: torch.Tensor) -> torch.Tensor:
        return sums.abs()
