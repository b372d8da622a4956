"""Channel-wise distillation for dense prediction (Shu et al., 2021)."""
import torch
from torch import nn

from mmcpd.registry import DISTILL_LOSSES
from mmcpd.distill._checks import (check_non_negative, check_positive,
                                   prepare_pair)


@DISTILL_LOSSES.register_module()
class CWDLoss(nn.Module):
    r"""KL divergence between per-channel spatial distributions.

    From "Channel-wise Knowledge Distillation for Dense Prediction" (Shu,
    Liu, Gao, Yan and Shen, ICCV 2021). Each channel :math:`c` of a map
    (N, C, H, W) becomes a distribution over its :math:`H W` positions
    :math:`i` by a softmax at temperature :math:`\tau`,
    :math:`\phi(y_{c})_i = \exp(y_{c,i} / \tau) / \sum_j \exp(y_{c,j} /
    \tau)`, and the student's distribution is pulled towards the
    teacher's:

    .. math::

        L = \frac{\tau^2}{N C} \sum_{n=1}^{N} \sum_{c=1}^{C} \sum_{i=1}^{HW}
            \phi(t_{n,c})_i \log
            \frac{\phi(t_{n,c})_i}{\phi(s_{n,c})_i}

    Works on segmentation logits and on feature maps. A student map of
    another spatial size is resized bilinearly to the teacher's.

    Args:
        tau (float): Temperature :math:`\tau`. Defaults to 1.0.
        loss_weight (float): Factor on the loss. Defaults to 1.0.

    Examples:
        >>> loss = CWDLoss(tau=4.0, loss_weight=3.0)
        >>> loss(torch.randn(2, 19, 32, 32), torch.randn(2, 19, 64, 64))
    """

    #: Default name of the term: logged as ``loss_cwd``.
    name = 'cwd'

    def __init__(self, tau: float = 1.0, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.tau = check_positive('tau', tau)
        self.loss_weight = check_non_negative('loss_weight', loss_weight)

    def forward(self, student: torch.Tensor,
                teacher: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Args:
            student (Tensor): Student map, (N, C, H, W).
            teacher (Tensor): Teacher map, (N, C, H', W'). No gradient
                flows into it.

        Returns:
            Tensor: The weighted loss, a scalar.
        """
        student, teacher = prepare_pair(type(self).__name__, student,
                                        teacher, 4, 4)
        n, c = teacher.shape[:2]
        log_p_t = torch.log_softmax(teacher.flatten(2) / self.tau, dim=2)
        log_p_s = torch.log_softmax(student.flatten(2) / self.tau, dim=2)
        kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum()
        return self.loss_weight * self.tau**2 * kl / (n * c)

    def extra_repr(self) -> str:
        return f'tau={self.tau}, loss_weight={self.loss_weight}'
