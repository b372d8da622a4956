"""Feature regression, as in FitNets (Romero et al., 2015)."""
import torch
from torch import nn

from mmcpd.registry import DISTILL_LOSSES
from mmcpd.distill._checks import check_non_negative, prepare_pair


@DISTILL_LOSSES.register_module()
class MSELoss(nn.Module):
    r"""Mean squared error between student and teacher features.

    From "FitNets: Hints for Thin Deep Nets" (Romero, Ballas, Kahou,
    Chassang, Gatta and Bengio, ICLR 2015), where a connector (the
    "regressor") maps the student's features to the teacher's width:

    .. math::

        L = \frac{1}{|t|} \sum_k (s_k - t_k)^2

    over all :math:`|t|` elements of the teacher's features. A student
    map (N, C, H, W) of another spatial size is resized bilinearly to
    the teacher's.

    Args:
        loss_weight (float): Factor on the loss. Defaults to 1.0.

    Examples:
        >>> loss = MSELoss(loss_weight=0.5)
        >>> loss(torch.randn(2, 64, 8, 8), torch.randn(2, 64, 8, 8))
    """

    #: Default name of the term: logged as ``loss_mse``.
    name = 'mse'

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = check_non_negative('loss_weight', loss_weight)

    def forward(self, student: torch.Tensor,
                teacher: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Args:
            student (Tensor): Student features, (N, C, ...).
            teacher (Tensor): Teacher features of the same shape (maps may
                differ in spatial size). No gradient flows into it.

        Returns:
            Tensor: The weighted loss, a scalar.
        """
        student, teacher = prepare_pair(type(self).__name__, student,
                                        teacher, 2, 4)
        if student.shape != teacher.shape:
            raise ValueError(
                f'MSELoss: student and teacher features should have the '
                f'same shape, but got student {tuple(student.shape)} and '
                f'teacher {tuple(teacher.shape)}')
        diff = student - teacher.detach()
        return self.loss_weight * diff.pow(2).mean()

    def extra_repr(self) -> str:
        return f'loss_weight={self.loss_weight}'
