"""What comb returns: the groups, and what else pruning needs to know."""
import json
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Tuple

from mmcpd.comb.group import AttrUpdate, CoupledGroup


@dataclass(frozen=True)
class NormSite:
    """An op whose result runs over pruned channels (a norm or a mix).

    LayerNorm and GroupNorm are found by ``kind`` in their module. Other
    channel-mixing ops (softmax, reductions, p-norms, local response norm)
    are found by ``kind`` and ``index``: the call's place among the module's
    calls of that op, counted anew at each call of the module.

    Args:
        module (str): The module that calls the op.
        kind (str): ``'layer_norm'``, ``'group_norm'`` or the op's name
            (``'softmax'``, ``'mean'``, ...).
        channels (tuple[tuple[int, int]]): For each mixed channel, the
            ``(group id, unit)`` that owns it, ``(-1, -1)`` when none does.
        dim (int): The mixed channel dim of the op's input (mixes only).
            Defaults to -1.
        index (int): The call's index (mixes only). Defaults to -1.
        keeps_dim (bool): The op's output keeps the channel dim (softmax),
            rather than reducing it. Defaults to False.
    """
    module: str
    kind: str
    channels: Tuple[Tuple[int, int], ...]
    dim: int = -1
    index: int = -1
    keeps_dim: bool = False


@dataclass(frozen=True)
class OpMacs:
    """The multiply-accumulates of an op without weights (a matmul of
    activations, a norm, a resize), as they shrink with channels.

    Per sample, the op costs ``macs * prod_d alive_d``, where ``alive_d``
    sums the ``count`` of every ``(group, unit, count)`` of dim ``d`` whose
    unit is kept (``(-1, -1, count)``: positions no group owns).

    Args:
        site (str): ``'op@module'``.
        macs (float): MACs per sample and per position of the labelled dims
            (the whole op's MACs when it has none).
        dims (tuple): Per labelled dim of the op's index space, the
            ``(group, unit, count)`` triples owning its positions.
    """
    site: str
    macs: float
    dims: Tuple[Tuple[Tuple[int, int, int], ...], ...] = ()

    @property
    def total(self) -> float:
        """MACs per sample with every channel kept."""
        total = self.macs
        for dim in self.dims:
            total *= sum(c for _, _, c in dim)
        return total


@dataclass
class CombResult:
    """Coupled groups of a model, and what pruning them needs.

    Args:
        groups (tuple[CoupledGroup]): All groups, frozen ones included.
        attr_updates (tuple[AttrUpdate]): Module attributes that follow
            group widths.
        norms (tuple[NormSite]): Norms and other ops over channels, for
            exact masking.
        param_macs (dict[str, float]): Multiply-accumulates per element of
            each weight in one forward of one sample at the traced size.
        warnings (list[str]): Ops that froze channels, and why.
        unexecuted (list[str]): Modules with parameters that the traced
            forward never ran (they are left as they are).
        channel_acts (dict[str, list[int]]): For conv and linear weights,
            ``[dim, n]``: each channel along ``dim`` (the output channels)
            writes ``n`` activation elements per sample at the traced size.
        op_macs (tuple[OpMacs]): MACs of the ops without weights; with
            ``param_macs`` they are the FLOPs of the deployed forward as
            mmengine counts them (see :mod:`mmcpd.comb.flops`).
    """
    groups: Tuple[CoupledGroup, ...]
    attr_updates: Tuple[AttrUpdate, ...] = ()
    norms: Tuple[NormSite, ...] = ()
    param_macs: Dict[str, float] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)
    unexecuted: List[str] = field(default_factory=list)
    channel_acts: Dict[str, List[int]] = field(default_factory=dict)
    op_macs: Tuple[OpMacs, ...] = ()

    @property
    def prunable(self) -> List[CoupledGroup]:
        return [g for g in self.groups if g.prunable]

    @property
    def frozen(self) -> List[CoupledGroup]:
        return [g for g in self.groups if not g.prunable]

    def __str__(self) -> str:
        prunable = self.prunable
        channels = sum(g.channels for g in prunable)
        lines = [
            f'{len(self.groups)} coupled groups: {len(prunable)} prunable '
            f'({channels} channels), {len(self.groups) - len(prunable)} '
            'frozen'
        ]
        lines += [str(g) for g in self.groups]
        if self.warnings:
            lines.append('warnings:')
            lines += [f'  {w}' for w in self.warnings]
        if self.unexecuted:
            lines.append('modules never run by the traced forward (left '
                         'as they are): ' + ', '.join(self.unexecuted))
        return '\n'.join(lines)

    def to_dict(self) -> dict:
        return dict(
            groups=[g.to_dict() for g in self.groups],
            attr_updates=[asdict(a) for a in self.attr_updates],
            norms=[asdict(n) for n in self.norms],
            param_macs=dict(self.param_macs),
            warnings=list(self.warnings),
            unexecuted=list(self.unexecuted),
            channel_acts={k: list(v)
                          for k, v in self.channel_acts.items()},
            op_macs=[[op.site, op.macs, [[list(t) for t in dim]
                                         for dim in op.dims]]
                     for op in self.op_macs])

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict) -> 'CombResult':
        attrs = tuple(
            AttrUpdate(a['module'], a['attr'],
                       tuple(a['old']) if isinstance(a['old'], list) else
                       a['old'],
                       tuple((g, n if isinstance(n, int) else tuple(n))
                             for g, n in a['per_unit']))
            for a in data.get('attr_updates', ()))
        norms = tuple(
            NormSite(n['module'], n['kind'],
                     tuple(tuple(c) for c in n['channels']),
                     n.get('dim', -1), n.get('index', -1),
                     n.get('keeps_dim', False))
            for n in data.get('norms', ()))
        return cls(
            tuple(CoupledGroup.from_dict(g) for g in data['groups']), attrs,
            norms, dict(data.get('param_macs', {})),
            list(data.get('warnings', [])), list(data.get('unexecuted', [])),
            {k: list(v)
             for k, v in data.get('channel_acts', {}).items()},
            tuple(
                OpMacs(site, float(macs),
                       tuple(tuple(tuple(t) for t in dim) for dim in dims))
                for site, macs, dims in data.get('op_macs', ())))
