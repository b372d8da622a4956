"""Importance scores of units, registered in ``mmcpd.registry.IMPORTANCES``.

Build one by name: ``IMPORTANCES.build(dict(type='hessian'))``.
"""
from .base import BaseImportance, GradImportance
from .hessian import HessianImportance
from .magnitude import MagnitudeImportance
from .random import RandomImportance
from .taylor import TaylorImportance

__all__ = [
    'BaseImportance', 'GradImportance', 'HessianImportance',
    'MagnitudeImportance', 'RandomImportance', 'TaylorImportance'
]
