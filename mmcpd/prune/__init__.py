"""Prune: importance scores, schedule, selection, masks, physical removal.

``CPDHook`` (:mod:`mmcpd.hooks`) drives these during training; each piece
also works on its own.
"""
from .convert import (convert_checkpoint, deploy_checkpoint,
                      deploy_from_training, pruned_copy)
from .cost import CostModel
from .dead import DeadUnits
from .importance import (BaseImportance, GradImportance, HessianImportance,
                         MagnitudeImportance, RandomImportance,
                         TaylorImportance)
from .schedule import SCHEDULES, PruneSchedule
from .selection import Guards, max_removable, select_units

__all__ = [
    'BaseImportance', 'GradImportance', 'HessianImportance',
    'MagnitudeImportance', 'RandomImportance', 'TaylorImportance',
    'CostModel', 'DeadUnits', 'Guards', 'PruneSchedule', 'SCHEDULES',
    'convert_checkpoint', 'deploy_checkpoint', 'deploy_from_training',
    'max_removable', 'pruned_copy', 'select_units'
]
