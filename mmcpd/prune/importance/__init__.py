"""Importance scores of units, registered in ``mmcpd.registry.IMPORTANCES``.

Build one by name: ``IMPORTANCES.build(dict(type='hessian'))``.
"""
from mmcpd.prune.importance.base import BaseImportance, GradImportance
from mmcpd.prune.importance.hessian import HessianImportance
from mmcpd.prune.importance.magnitude import MagnitudeImportance
from mmcpd.prune.importance.random import RandomImportance
from mmcpd.prune.importance.taylor import TaylorImportance

__all__ = [
    'BaseImportance', 'GradImportance', 'HessianImportance',
    'MagnitudeImportance', 'RandomImportance', 'TaylorImportance'
]
