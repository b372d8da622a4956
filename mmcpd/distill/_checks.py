"""Argument and input checks shared by the distillation losses."""
from numbers import Real

import torch
import torch.nn.functional as F


def check_positive(name: str, value) -> float:
    """Return ``value`` as a float if it is a positive real number.

    Raises:
        TypeError: If ``value`` is not a real number.
        ValueError: If ``value`` is not positive.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f'`{name}` should be a number, but got '
                        f'{type(value).__name__}')
    if not value > 0:
        raise ValueError(f'`{name}` should be positive, but got {value}')
    return float(value)


def check_non_negative(name: str, value) -> float:
    """Return ``value`` as a float if it is a real number >= 0.

    Raises:
        TypeError: If ``value`` is not a real number.
        ValueError: If ``value`` is negative.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f'`{name}` should be a number, but got '
                        f'{type(value).__name__}')
    if not value >= 0:
        raise ValueError(f'`{name}` should be >= 0, but got {value}')
    return float(value)


def check_pair(loss: str, student: torch.Tensor, teacher: torch.Tensor,
               min_dim: int, max_dim: int) -> None:
    """Check that student and teacher outputs can be compared.

    Batch size, channels and number of dimensions must agree; spatial sizes
    may differ (see :func:`resize_like`).

    Raises:
        TypeError: If either is not a tensor.
        ValueError: If the dimensions, batch sizes or channels differ.
    """
    for role, x in (('student', student), ('teacher', teacher)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f'{loss}: the {role} output should be a tensor, '
                            f'but got {type(x).__name__}')
        if not min_dim <= x.dim() <= max_dim:
            raise ValueError(
                f'{loss}: the {role} output should have {min_dim} to '
                f'{max_dim} dimensions, but got shape {tuple(x.shape)}')
    if (student.dim() != teacher.dim()
            or student.shape[:2] != teacher.shape[:2]):
        raise ValueError(
            f'{loss}: student and teacher outputs should agree in batch '
            f'size and channels, but got student {tuple(student.shape)} and '
            f'teacher {tuple(teacher.shape)}')


def resize_like(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Resize a student map (N, C, H, W) bilinearly to the teacher's size.

    Tensors with fewer than four dimensions, or maps of the same size, are
    returned unchanged.
    """
    if student.dim() == 4 and student.shape[2:] != teacher.shape[2:]:
        return F.interpolate(
            student,
            size=teacher.shape[2:],
            mode='bilinear',
            align_corners=False)
    return student


def prepare_pair(loss: str, student: torch.Tensor, teacher: torch.Tensor,
                 min_dim: int, max_dim: int):
    """Check a student/teacher pair, resize the student map to the
    teacher's and cut the teacher from the graph.

    Returns:
        tuple[Tensor, Tensor]: The student (resized) and the detached teacher.
    """
    check_pair(loss, student, teacher, min_dim, max_dim)
    return resize_like(student, teacher), teacher.detach()
