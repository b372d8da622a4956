"""mmengine hooks of mmcpd (registered in mmengine's root HOOKS)."""
from mmcpd.engine.hooks.cpd_hook import CPDHook

__all__ = ['CPDHook']
