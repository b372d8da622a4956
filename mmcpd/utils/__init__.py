"""Small helpers shared by mmcpd's subpackages."""
from mmcpd.utils.checkpoint import (MMENGINE_SAFE_GLOBALS, CheckpointError,
                                    add_mmengine_safe_globals,
                                    load_checkpoint_file,
                                    mmengine_safe_globals)
from mmcpd.utils.setup_env import register_all_modules

__all__ = [
    'MMENGINE_SAFE_GLOBALS', 'CheckpointError', 'add_mmengine_safe_globals',
    'load_checkpoint_file', 'mmengine_safe_globals', 'register_all_modules'
]
