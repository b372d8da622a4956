"""Distillation: losses, feature recording and connectors.

Losses are registered in :data:`mmcpd.registry.DISTILL_LOSSES`; the
:class:`~mmcpd.models.DistillWrapper` puts them to work during pruning.
"""
from .connector import Connector, build_connector
from .cwd import CWDLoss
from .dist import DISTLoss
from .kd import KDLoss
from .mse import MSELoss
from .recorder import record_outputs
from .term import LOGITS, DistillTerm, build_terms

__all__ = [
    'KDLoss', 'CWDLoss', 'DISTLoss', 'MSELoss', 'Connector', 'build_connector',
    'record_outputs', 'DistillTerm', 'build_terms', 'LOGITS'
]
