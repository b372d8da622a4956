"""User entry points, one call per step: comb a model, prune it, build a
config's model and load a (pruned) checkpoint, benchmark it.

The mmengine adapters (CPDHook, CPDRunner) are in :mod:`mmcpd.engine`; the
zoo oracles in :mod:`mmcpd.testing`.
"""
from mmcpd.apis.pruning import comb_model, prune_model
from mmcpd.models.loading import (build_model_from_cfg, init_model,
                                  load_pruned_checkpoint,
                                  resolve_config_path)

__all__ = [
    'build_model_from_cfg', 'comb_model', 'init_model',
    'load_pruned_checkpoint', 'prune_model', 'resolve_config_path'
]
