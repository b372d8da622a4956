"""Second-order (Hessian) importance with the empirical Fisher."""
import torch

from mmcpd.registry import IMPORTANCES
from mmcpd.prune.importance.base import GradImportance


@IMPORTANCES.register_module(name='hessian')
class HessianImportance(GradImportance):
    r"""Loss increase of removing a unit, to second order (the default).

    Removing unit :math:`u` sets the weights :math:`w_i, i \in u` of all the
    group's members to zero, i.e. moves them by :math:`\delta_i = -w_i`. The
    second-order Taylor expansion of the loss around the trained weights,
    with the Hessian replaced by the empirical Fisher
    :math:`H \approx g g^\top` (``g`` the gradient of the batch loss), gives
    for one batch

    .. math::

        \Delta L_u \approx -\sum_{i \in u} g_i w_i
            + \frac{1}{2} \Big(\sum_{i \in u} w_i g_i\Big)^2 .

    The first-order term averages out near a minimum of the training loss
    (its sign flips from batch to batch), so the score keeps the curvature
    term and sums it over the :math:`B` optimizer steps of a prune interval:

    .. math::

        I_u = \sum_{b=1}^{B} \frac{1}{2}
              \Big(\sum_{m \in \text{members}} \sum_{i \in u_m}
              w_i \, \frac{\partial L_b}{\partial w_i}\Big)^2 .

    The sum over ``i`` runs over every member of the group (producer
    weights and biases, norm affine parameters, consumer input weights):
    exactly the parameters that pruning the unit zeroes, so coupled channels
    are scored as one. :class:`~mmcpd.engine.hooks.CPDHook` reads the gradients
    once per optimizer step, after AMP unscaling and before gradient
    clipping, so under gradient accumulation :math:`L_b` is the loss of the
    whole accumulated batch, the loss scale is removed, the clipping factor
    is not applied, and under DDP the gradient is the all-reduced one. A
    step with a NaN or inf gradient is skipped and counted
    (``skipped_steps``). The score divided by the unit's cost (params or
    FLOPs) is what the selection ranks.

    This is the Group-Fisher form of the CPD paper (the squared gradient of
    a batch, not per sample: per-sample gradients would cost an extra
    backward pass).

    References:
        - Molchanov et al., "Importance Estimation for Neural Network
          Pruning", CVPR 2019.
        - Liu et al., "Group Fisher Pruning for Practical Network
          Compression", ICML 2021.
        - Schmitt et al., "Comb, Prune, Distill: Towards Unified Pruning for
          Vision Model Compression", ITSC 2024 (arXiv 2408.03046).
    """

    def _per_step(self, sums: torch.Tensor) -> torch.Tensor:
        return sums.square() * 0.5
