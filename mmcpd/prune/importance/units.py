"""Per-unit sums of per-element values, for every prunable group at once.

Every importance score and every cost in :mod:`mmcpd.prune` is a sum, over
the members of a coupled group and over the indices that a unit owns, of
some per-element quantity (``w * dL/dw``, ``w ** 2``, a parameter count).
:class:`UnitMap` precomputes, for each member, which unit each index along
the member's dimension belongs to, so that one ``index_add_`` per member
turns a per-element tensor into per-unit sums of all groups, laid out in one
flat vector (group after group). A grouped conv's input channels
(``Member.groups > 1``) map per row and column of its weight.
"""
import math
from typing import Callable, Dict, List, Mapping, Sequence, Tuple

import torch

from mmcpd.comb.group import CoupledGroup


class UnitMap:
    """Index tables from tensor positions to the units of coupled groups.

    Args:
        groups (Sequence[CoupledGroup]): The groups whose units are scored.
        shapes (Mapping[str, Sequence[int]]): Shape of each tensor that may
            be a member, by ``state_dict`` name; members not in it are left
            out (e.g. buffers when only parameters are given).
        device (torch.device | str): Where the index tables live (that of
            the tensors that will be summed). Defaults to ``'cpu'``.

    Attributes:
        offsets (dict[int, int]): Start of each group's units in the flat
            vector.
        total (int): Number of units of all groups.
    """

    def __init__(self,
                 groups: Sequence[CoupledGroup],
                 shapes: Mapping[str, Sequence[int]],
                 device='cpu'):
        self.groups = tuple(groups)
        self.offsets: Dict[int, int] = {}
        start = 0
        for group in self.groups:
            self.offsets[group.id] = start
            start += group.num_units
        self.total = start
        # (name, dim) -> index of the unit (in the flat vector) of each
        # position along dim; positions outside every group go to the sink
        # at ``total``.
        tables: Dict[Tuple[str, int], torch.Tensor] = {}
        # grouped convs' input channels: the table is per (row, column)
        split: Dict[Tuple[str, int], int] = {}
        for group in self.groups:
            offset = self.offsets[group.id]
            for member in group.members:
                if member.name not in shapes:
                    continue
                key = (member.name, member.dim)
                if key not in tables:
                    size = shapes[member.name][member.dim] * member.groups
                    tables[key] = torch.full((size, ), self.total,
                                             dtype=torch.long)
                    if member.groups > 1:
                        split[key] = member.groups
                unit_ids = torch.repeat_interleave(
                    torch.arange(len(member.counts)),
                    torch.tensor(member.counts, dtype=torch.long))
                tables[key][torch.tensor(member.index,
                                         dtype=torch.long)] = offset + unit_ids
        for (name, dim), groups in split.items():
            rows = shapes[name][0]
            tables[(name, dim)] = tables[(name, dim)].view(
                groups, 1, -1).expand(groups, rows // groups,
                                      -1).reshape(rows, -1)
        self.tables = {k: v.to(device) for k, v in tables.items()}
        self.names = sorted({name for name, _ in self.tables})
        self._by_name: Dict[str, List[Tuple[int, torch.Tensor]]] = {}
        for (name, dim), table in sorted(self.tables.items()):
            self._by_name.setdefault(name, []).append((dim, table))

    def unit_sums(self,
                  values: Mapping[str, torch.Tensor],
                  out: torch.Tensor = None) -> torch.Tensor:
        """Sum per-element values over the indices of every unit.

        Args:
            values (Mapping[str, Tensor]): Per-element values, by tensor
                name, with the tensors' full shapes; names not given add
                nothing.
            out (Tensor, optional): A float vector of ``total + 1`` entries
                to add into. Defaults to a new zero vector.

        Returns:
            Tensor: ``total + 1`` sums; the last entry collects positions
            outside every group and should be ignored.
        """
        for name, entries in self._by_name.items():
            value = values.get(name)
            if value is None:
                continue
            if out is None:
                out = value.new_zeros(self.total + 1, dtype=torch.float32)
            dims = [d for d, table in entries if table.dim() == 1]
            for dim, per_index in _reduce(value, dims) if dims else ():
                out.index_add_(0, self.tables[(name, dim)],
                               per_index.to(out.dtype))
            for dim, table in entries:
                if table.dim() == 2:  # per row and column: (out, in)
                    per_entry = _sum_last(value.reshape(table.numel(), -1))
                    out.index_add_(0, table.ravel(),
                                   per_entry.to(out.dtype))
        if out is None:
            out = torch.zeros(self.total + 1)
        return out

    def split(self, flat: torch.Tensor) -> Dict[int, torch.Tensor]:
        """Cut a flat per-unit vector into one vector per group id."""
        return {
            g.id: flat[self.offsets[g.id]:self.offsets[g.id] + g.num_units]
            for g in self.groups
        }

    def join(self, per_group: Mapping[int, torch.Tensor]) -> torch.Tensor:
        """Inverse of :meth:`split` (without the sink entry)."""
        return torch.cat([per_group[g.id] for g in self.groups]) \
            if self.groups else torch.zeros(0)


def _reduce(value: torch.Tensor, dims: List[int]):
    """``(dim, value summed over every other dim)`` for each of ``dims``.

    Weights (``[out, in, *kernel]``) are first summed over their kernel, so
    that the sums along ``out`` and ``in`` run on ``out x in``. In float32
    and float64 each sum is a matrix-vector product with a vector of ones
    (BLAS reads a strided dim at full memory speed, where a strided
    ``Tensor.sum`` is several times slower on CPU); other dtypes use
    ``Tensor.sum``.
    """
    if value.dim() > 2 and all(d < 2 for d in dims):
        size = value.shape[0] * value.shape[1]
        value = _sum_last(value.reshape(size, -1)).view(value.shape[:2])
    for dim in dims:
        if value.dim() == 1:
            yield dim, value
            continue
        pre = math.prod(value.shape[:dim])
        size = value.shape[dim]
        per_index = _sum_last(value.reshape(pre * size, -1)).view(pre, size)
        yield dim, _sum_last(per_index.t())


def _sum_last(matrix: torch.Tensor) -> torch.Tensor:
    """Row sums of a 2-d tensor (a view of it when rows have one entry)."""
    if matrix.shape[1] == 1:
        return matrix.squeeze(1)
    if matrix.dtype in (torch.float32, torch.float64):
        return torch.mv(matrix, _ones(matrix.shape[1], matrix))
    return matrix.sum(1)


_ONES: Dict[tuple, torch.Tensor] = {}


def _ones(n: int, like: torch.Tensor) -> torch.Tensor:
    """A cached vector of ``n`` ones with the dtype and device of ``like``."""
    key = (n, like.dtype, like.device)
    ones = _ONES.get(key)
    if ones is None:
        ones = _ONES[key] = torch.ones(n, dtype=like.dtype, device=like.device)
    return ones


def named_tensors(model: torch.nn.Module,
                  buffers: bool = False) -> Dict[str, torch.Tensor]:
    """Parameters (and buffers) of ``model`` by ``state_dict`` name."""
    tensors = dict(model.named_parameters())
    if buffers:
        tensors.update(model.named_buffers())
    return tensors


def map_values(tensors: Mapping[str, torch.Tensor], names: List[str],
               fn: Callable) -> Dict[str, torch.Tensor]:
    """``{name: fn(tensor)}`` for the given names, skipping Nones."""
    out = {}
    for name in names:
        tensor = tensors.get(name)
        if tensor is None:
            continue
        value = fn(tensor)
        if value is not None:
            out[name] = value
    return out
