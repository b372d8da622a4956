"""Distillation: losses, feature recording and connectors.

Losses are registered in :data:`mmcpd.registry.DISTILL_LOSSES`; the
:class:`~mmcpd.models.DistillWrapper` puts them to work during pruning.
"""
from mmcpd.distill.connector import Connector, build_connector
from mmcpd.distill.cwd import CWDLoss
from mmcpd.distill.dist import DISTLoss
from mmcpd.distill.kd import KDLoss
from mmcpd.distill.mse import MSELoss
from mmcpd.distill.recorder import record_outputs
from mmcpd.distill.term import LOGITS, DistillTerm, build_terms

__all__ = [
    'KDLoss', 'CWDLoss', 'DISTLoss', 'MSELoss', 'Connector', 'build_connector',
    'record_outputs', 'DistillTerm', 'build_terms', 'LOGITS'
]
