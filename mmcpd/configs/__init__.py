"""mmcpd's base configs in mmengine's pure-Python style.

The same settings as ``configs/_base_/`` (``mmcpd::_base_/...``), for
configs written with ``read_base()``::

    from mmengine.config import read_base

    with read_base():
        from .my_resnet18 import *  # your pure-Python config
        from mmcpd.configs._base_.cpd_kd import *

    cpd.update(target=0.6)  # in this style a child updates, not merges

mmengine reads these files by path (never imports them).
"""
