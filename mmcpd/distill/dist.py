"""DIST: relations between class probabilities (Huang et al., 2022)."""
import torch
from torch import nn

from mmcpd.registry import DISTILL_LOSSES
from mmcpd.distill._checks import (check_non_negative, check_positive,
                                   prepare_pair)


def _pearson_distance(a: torch.Tensor, b: torch.Tensor,
                      eps: float) -> torch.Tensor:
    """``1 - pearson(a_i, b_i)`` for each row ``i`` of two (M, K) tensors."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    cos = (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)
    return 1 - cos


@DISTILL_LOSSES.register_module()
class DISTLoss(nn.Module):
    r"""Inter- and intra-class Pearson relations of class probabilities.

    From "Knowledge Distillation from A Stronger Teacher" (Huang, You,
    Wang, Qian and Xu, NeurIPS 2022). With probabilities
    :math:`Y = \mathrm{softmax}(Z / \tau)` of a batch, (B, C), for
    student and teacher, and the Pearson distance
    :math:`d_p(u, v) = 1 - \rho_p(u, v)`:

    .. math::

        L_{inter} = \frac{\tau^2}{B} \sum_{i=1}^{B}
            d_p(Y^s_{i,:}, Y^t_{i,:}), \quad
        L_{intra} = \frac{\tau^2}{C} \sum_{j=1}^{C}
            d_p(Y^s_{:,j}, Y^t_{:,j})

    .. math::

        L = \beta L_{inter} + \gamma L_{intra}

    Only the relations matter, not the exact values, which lets a
    student match a much stronger teacher. For dense logits (N, C, H, W),
    every pixel is one sample (B = N H W); a student map of another size
    is resized bilinearly to the teacher's.

    Args:
        beta (float): Weight :math:`\beta` of the inter-class relation.
            Defaults to 1.0.
        gamma (float): Weight :math:`\gamma` of the intra-class relation.
            Defaults to 1.0.
        tau (float): Temperature :math:`\tau`. Defaults to 1.0.
        loss_weight (float): Factor on the loss. Defaults to 1.0.
        eps (float): Added to the denominator of the correlation.
            Defaults to 1e-8.

    Examples:
        >>> loss = DISTLoss(beta=1.0, gamma=2.0)
        >>> loss(torch.randn(8, 10), torch.randn(8, 10))
    """

    #: Default name of the term: logged as ``loss_dist``.
    name = 'dist'

    def __init__(self,
                 beta: float = 1.0,
                 gamma: float = 1.0,
                 tau: float = 1.0,
                 loss_weight: float = 1.0,
                 eps: float = 1e-8) -> None:
        super().__init__()
        self.beta = check_non_negative('beta', beta)
        self.gamma = check_non_negative('gamma', gamma)
        self.tau = check_positive('tau', tau)
        self.loss_weight = check_non_negative('loss_weight', loss_weight)
        self.eps = check_positive('eps', eps)

    def forward(self, student: torch.Tensor,
                teacher: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Args:
            student (Tensor): Student logits, (B, C) or (N, C, ...).
            teacher (Tensor): Teacher logits of the same shape (dense maps
                may differ in size). No gradient flows into it.

        Returns:
            Tensor: The weighted loss, a scalar.
        """
        student, teacher = prepare_pair(type(self).__name__, student,
                                        teacher, 2, 4)
        c = teacher.shape[1]
        # (N, C, ...) -> (N * ..., C): every position is a sample.
        y_s = student.movedim(1, -1).reshape(-1, c)
        y_t = teacher.movedim(1, -1).reshape(-1, c)
        y_s = torch.softmax(y_s / self.tau, dim=1)
        y_t = torch.softmax(y_t / self.tau, dim=1)
        inter = _pearson_distance(y_s, y_t, self.eps).mean()
        intra = _pearson_distance(y_s.t(), y_t.t(), self.eps).mean()
        loss = self.tau**2 * (self.beta * inter + self.gamma * intra)
        return self.loss_weight * loss

    def extra_repr(self) -> str:
        return (f'beta={self.beta}, gamma={self.gamma}, tau={self.tau}, '
                f'loss_weight={self.loss_weight}')
