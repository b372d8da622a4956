"""High-level entry points: build a model and load an mmcpd checkpoint."""
from .model import (build_model_from_cfg, init_model, load_pruned_checkpoint,
                    resolve_config_path)

__all__ = [
    'build_model_from_cfg', 'init_model', 'load_pruned_checkpoint',
    'resolve_config_path'
]
