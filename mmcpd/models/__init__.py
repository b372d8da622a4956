"""Models: the DistillWrapper that runs a frozen teacher beside the student."""
from .distill_wrapper import DistillWrapper, unwrap_student

__all__ = ['DistillWrapper', 'unwrap_student']
