"""Coupled groups: the plain data that comb hands to prune.

A coupled group is a set of parameter (or buffer) dimensions whose channels
must be removed together so that every add, concat, attention head and norm
still fits. The group is cut into *units*: the smallest sets of channels that
can be removed on their own (one channel of a conv chain, one head of an
attention layer, one group of a GroupNorm). Removing unit ``u`` of a group
removes, for every member, the indices ``member.units[u]`` along
``member.dim``.
"""
from dataclasses import asdict, dataclass
from typing import Mapping, Optional, Sequence, Tuple

#: Units by group id: what a prune step removes, and what has been removed
#: so far (in the unpruned numbering unless a docstring says otherwise).
Removed = Mapping[int, Sequence[int]]

Indices = Tuple[int, ...]


@dataclass(frozen=True)
class Member:
    """One tensor dimension that shrinks with a group.

    Args:
        name (str): Qualified name of the parameter or buffer, as in
            ``model.state_dict()``, e.g. ``'layer1.0.conv1.weight'``.
        dim (int): The dimension of that tensor that shrinks.
        role (str): What the dimension is to its layer: ``'out'`` (output
            channels of a conv / linear / attention projection), ``'in'``
            (input channels), or ``'param'`` (an elementwise parameter or
            buffer: norm affine and statistics, biases, tokens, scales).
        index (tuple[int]): The indices along ``dim`` owned by the group,
            unit after unit.
        counts (tuple[int]): How many of ``index`` each unit owns.
        groups (int): 1, or the conv groups of a grouped convolution's
            weight whose input channels (``dim`` 1, ``role='in'``) the
            member covers: ``index`` then counts over all ``groups *
            shape[dim]`` input channels, and input channel ``p`` is column
            ``p % shape[dim]`` of the rows of conv group ``p //
            shape[dim]`` only, so that each conv group may keep other
            columns (a channel shuffle before the conv, as in ShuffleNet
            V1). Every conv group loses as many columns as the others.
    """
    name: str
    dim: int
    role: str
    index: Indices
    counts: Indices
    groups: int = 1

    @property
    def units(self) -> Tuple[Indices, ...]:
        """For each unit, the indices along ``dim`` that it owns."""
        out, start = [], 0
        for c in self.counts:
            out.append(self.index[start:start + c])
            start += c
        return tuple(out)

    @property
    def size(self) -> int:
        """Number of indices of this member covered by the group."""
        return len(self.index)

    def __str__(self) -> str:
        per_unit = set(self.counts)
        width = (f'x{per_unit.pop()}' if len(per_unit) == 1 else 'x?')
        grouped = f' in {self.groups} conv groups' if self.groups > 1 else ''
        return (f'{self.name}  {self.role}[{self.size}] dim={self.dim}'
                f'{grouped} ({len(self.counts)} units {width})')


@dataclass(frozen=True)
class AttrUpdate:
    """A module attribute whose value follows the width of a group.

    After pruning, ``new = old - sum_g removed_units(g) * per_unit[g]``
    (or the sum of the removed units' own amounts); the
    attribute is written as an int, or as a one-tuple when ``old`` is one
    (``LayerNorm.normalized_shape``). ``attr`` may name an element of a
    list or tuple attribute, ``'num_features[3]'``: ``old`` is then the
    whole sequence, and that element is the one that drops.

    Args:
        module (str): Qualified module name.
        attr (str): Attribute name, e.g. ``'num_heads'``.
        old (int | tuple): The attribute's value before pruning.
        per_unit (tuple[tuple[int, int | tuple[int]]]): ``(group id,
            amount per removed unit)`` pairs; the amount is a tuple, unit
            by unit, where units remove different amounts (the size of a
            split whose last piece is a remainder).
    """
    module: str
    attr: str
    old: object
    per_unit: Tuple[Tuple[int, int], ...]


@dataclass(frozen=True)
class CoupledGroup:
    """Channels that must be removed together.

    Args:
        id (int): Index of the group in the comb result.
        members (tuple[Member]): Every tensor dimension that shrinks.
        num_units (int): Number of removable units.
        via (tuple[str]): The ops that couple the members, as
            ``'op@module'`` strings, for display.
        frozen (str, optional): Why the group must not be pruned, or None
            when it is prunable.
    """
    id: int
    members: Tuple[Member, ...]
    num_units: int
    via: Tuple[str, ...] = ()
    frozen: Optional[str] = None

    @property
    def prunable(self) -> bool:
        return self.frozen is None and self.num_units > 1

    @property
    def root(self) -> str:
        """Name of the first output member: what the group is named after."""
        for m in self.members:
            if m.role == 'out':
                return m.name
        return self.members[0].name

    @property
    def channels(self) -> int:
        """Output channels of the root member covered by the group."""
        for m in self.members:
            if m.role == 'out':
                return m.size
        return self.members[0].size

    def __str__(self) -> str:
        head = (f'group {self.id}: {self.root} '
                f'[{self.num_units} units, {self.channels} channels]')
        if self.frozen:
            head += f'  FROZEN: {self.frozen}'
        lines = [head]
        via = '  via ' + ', '.join(self.via[:4]) if self.via else ''
        for m in self.members:
            lines.append(f'  {m}{via}')
            via = ''
        return '\n'.join(lines)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> 'CoupledGroup':
        members = tuple(
            Member(m['name'], m['dim'], m['role'], tuple(m['index']),
                   tuple(m['counts']), m.get('groups', 1))
            for m in data['members'])
        return cls(data['id'], members, data['num_units'],
                   tuple(data.get('via', ())), data.get('frozen'))
