"""Models: the DistillWrapper that runs a frozen teacher beside the student,
and the builder of a config's model at pruned widths."""
from mmcpd.models.distill_wrapper import DistillWrapper, unwrap_student
from mmcpd.models.pruned_model import build_pruned_model

PrunedModel = build_pruned_model

__all__ = ['DistillWrapper', 'PrunedModel', 'build_pruned_model',
           'unwrap_student']
