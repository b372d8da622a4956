"""mmcpd's registries.

Models, hooks and datasets are registered in mmengine's root registries, so
that ``type='DistillWrapper'`` or ``type='CPDHook'`` resolves from any
MMPretrain or MMSegmentation config once ``mmcpd`` is imported (child
registries look names up in their parents). Importance scores and
distillation losses are mmcpd's own kinds of object and get registries of
their own, to which users can add their own entries.
"""
from mmengine.registry import DATASETS, HOOKS, MODELS, TRANSFORMS, Registry

IMPORTANCES = Registry('importance', locations=['mmcpd.prune.importance'])
DISTILL_LOSSES = Registry('distill loss', locations=['mmcpd.distill'])

__all__ = [
    'DATASETS', 'HOOKS', 'MODELS', 'TRANSFORMS', 'IMPORTANCES',
    'DISTILL_LOSSES'
]
