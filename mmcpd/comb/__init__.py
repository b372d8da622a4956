"""Comb: find the coupled channel groups of a model by tracing it once."""
from .api import trace_groups
from .group import AttrUpdate, CoupledGroup, Member
from .result import CombResult, NormSite
from .trace import TraceError, default_forward

__all__ = [
    'trace_groups', 'CombResult', 'CoupledGroup', 'Member', 'AttrUpdate', 'NormSite',
    'TraceError', 'default_forward'
]
