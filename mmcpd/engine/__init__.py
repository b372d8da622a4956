"""mmengine adapters: the CPDHook that routes runner events to a
:class:`~mmcpd.prune.session.PruneSession`, the CPDRunner that applies a
config's ``cpd`` and ``distill`` fields, and the config transform.

The algorithm lives below (:mod:`mmcpd.comb`, :mod:`mmcpd.prune`,
:mod:`mmcpd.distill`, :mod:`mmcpd.deploy`); nothing here scores, selects
or cuts.
"""
from mmcpd.engine.cpd_runner import CPDRunner
from mmcpd.engine.hooks import CPDHook

__all__ = ['CPDHook', 'CPDRunner']
