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
    'DISTILL_LOSSES', 'build_own'
]


def build_own(registry: Registry, cfg: dict):
    """Build from one of mmcpd's own registries (``IMPORTANCES``,
    ``DISTILL_LOSSES``) under any default scope.

    An MMPretrain or MMSeg config sets its own default scope, whose registry
    tree has no importance or distillation-loss registry: mmengine would
    warn that it falls back to mmcpd's at every build. The build runs in
    the ``mmcpd`` scope instead.
    """
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmcpd'):
        return registry.build(cfg)
