"""mmengine hooks of mmcpd (registered in mmengine's root HOOKS)."""
from .cpd_hook import CPDHook

__all__ = ['CPDHook']
