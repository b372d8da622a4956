"""Prune: the algorithm, framework-free.

A :class:`PruneSession` owns a run (schedule, gathering window, closed
latency loop, history, checkpoint state) and drives a :class:`Pruner`
(importance, costs, selection, removal); ``CPDHook`` routes mmengine's
events to it and ``mmcpd.prune_model`` runs it once. Sub-packages:
:mod:`.importance` (scores), :mod:`.cost` (what a model costs),
:mod:`.surgery` (where units sit, cutting and masking them, verification),
:mod:`.spec` (the pruned architecture as JSON).
"""
from mmcpd.prune.convert import (deploy_checkpoint, deploy_from_training,
                                 pruned_copy)
from mmcpd.prune.cost import CostModel
from mmcpd.prune.importance import (BaseImportance, GradImportance,
                                    HessianImportance, MagnitudeImportance,
                                    RandomImportance, TaylorImportance)
from mmcpd.prune.pruner import Pruner
from mmcpd.prune.schedule import SCHEDULES, PruneSchedule
from mmcpd.prune.selection import Guards, max_removable, select_units
from mmcpd.prune.session import PruneSession, PruneStep, Sync
from mmcpd.prune.settings import PruneSettings
from mmcpd.prune.surgery.dead import DeadUnits
from mmcpd.prune.verified_comb import comb_model

__all__ = [
    'BaseImportance', 'GradImportance', 'HessianImportance',
    'MagnitudeImportance', 'RandomImportance', 'TaylorImportance',
    'CostModel', 'DeadUnits', 'Guards', 'PruneSchedule', 'PruneSession',
    'PruneSettings', 'PruneStep', 'Pruner', 'SCHEDULES', 'Sync',
    'comb_model', 'deploy_checkpoint', 'deploy_from_training',
    'max_removable', 'pruned_copy', 'select_units'
]
