"""Comb: find the coupled channel groups of a model by tracing it once."""
from mmcpd.comb.pipeline import trace_groups
from mmcpd.comb.group import AttrUpdate, CoupledGroup, Member
from mmcpd.comb.result import CombResult, NormSite, OpMacs
from mmcpd.comb.trace import TraceError, default_forward, not_deployed

__all__ = [
    'trace_groups', 'CombResult', 'CoupledGroup', 'Member', 'AttrUpdate',
    'NormSite', 'OpMacs', 'TraceError', 'default_forward', 'not_deployed'
]
