"""Comb: find the coupled channel groups of a model by tracing it once."""
from .api import trace_groups
from .group import AttrUpdate, CoupledGroup, Member
from .result import CombResult, NormSite, OpMacs
from .trace import TraceError, default_forward, not_deployed

__all__ = [
    'trace_groups', 'CombResult', 'CoupledGroup', 'Member', 'AttrUpdate',
    'NormSite', 'OpMacs', 'TraceError', 'default_forward', 'not_deployed'
]
