"""Vanilla knowledge distillation on logits (Hinton et al., 2015)."""
import torch
from torch import nn

from mmcpd.registry import DISTILL_LOSSES
from mmcpd.distill._checks import (check_non_negative, check_positive,
                                   prepare_pair)


@DISTILL_LOSSES.register_module()
class KDLoss(nn.Module):
    r"""KL divergence between temperature-softened class distributions.

    From "Distilling the Knowledge in a Neural Network" (Hinton, Vinyals
    and Dean, 2015, arXiv 1503.02531). With student logits :math:`s`,
    teacher logits :math:`t` and temperature :math:`T`:

    .. math::

        L = \frac{T^2}{N} \sum_{n=1}^{N} \mathrm{KL}\big(
            \mathrm{softmax}(t_n / T) \,\|\, \mathrm{softmax}(s_n / T)\big)

    The :math:`T^2` factor keeps the gradient scale independent of
    :math:`T`. For dense logits (N, C, H, W), every pixel is one sample:
    the mean runs over N * H * W, and a student map of another size is
    resized bilinearly to the teacher's.

    Args:
        tau (float): Temperature :math:`T`. Defaults to 1.0.
        loss_weight (float): Factor on the loss. Defaults to 1.0.

    Examples:
        >>> loss = KDLoss(tau=4.0)
        >>> loss(torch.randn(8, 10), torch.randn(8, 10))
    """

    #: Default name of the term: logged as ``loss_kd``.
    name = 'kd'

    def __init__(self, tau: float = 1.0, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.tau = check_positive('tau', tau)
        self.loss_weight = check_non_negative('loss_weight', loss_weight)

    def forward(self, student: torch.Tensor,
                teacher: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Args:
            student (Tensor): Student logits, (N, C) or (N, C, ...).
            teacher (Tensor): Teacher logits of the same shape (dense maps
                may differ in size). No gradient flows into it.

        Returns:
            Tensor: The weighted loss, a scalar.
        """
        student, teacher = prepare_pair(type(self).__name__, student,
                                        teacher, 2, 4)
        log_p_t = torch.log_softmax(teacher / self.tau, dim=1)
        log_p_s = torch.log_softmax(student / self.tau, dim=1)
        kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)
        return self.loss_weight * self.tau**2 * kl.mean()

    def extra_repr(self) -> str:
        return f'tau={self.tau}, loss_weight={self.loss_weight}'
