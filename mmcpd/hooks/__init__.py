"""Where :class:`CPDHook` lived before 0.4 (configs that name
``mmcpd.hooks.CPDHook`` keep working); it is :mod:`mmcpd.engine.hooks`."""
from mmcpd.engine.hooks import CPDHook

__all__ = ['CPDHook']
