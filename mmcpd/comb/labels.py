"""Channel labels: which channel of which tensor is which.

While the model runs once, every channel-like position of every tensor gets
an integer *element id*. Parameters and buffers get fresh ids the first time
an op reads them; an op's output reuses the ids of the inputs it copies
(elementwise ops, reshapes, concatenations) or of the weight that makes it
(a convolution's output channels are its weight's rows). Ops that tie two
positions together (an add, a matmul's contracted dimension) record a union
of their ids. Connected components of the union are the smallest sets of
channels that can be removed together: the units of the coupled groups.

A tensor's labels are a list of :class:`Block`: a block covers one or more
dimensions of the tensor and holds the element id of every position of those
dimensions (a joint block over ``(heads, head_dim)`` arises when a channel
dimension is split by a reshape). Dimensions in no block are not channels
(batch, space, tokens) or not known to be.
"""
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.weak import WeakIdKeyDictionary


@dataclass
class Block:
    """Element ids of the positions of some dimensions of a tensor.

    Args:
        dims (tuple[int]): Tensor dimensions covered, in the order of the
            axes of ``ids``.
        ids (np.ndarray): Element ids; ``ids.shape`` equals the sizes of
            ``dims``.
    """
    dims: Tuple[int, ...]
    ids: np.ndarray


Labels = List[Block]


class LabelGraph:
    """Element ids, their unions and their frozen marks for one trace."""

    def __init__(self):
        self.num_elements = 0
        self._union_a: List[np.ndarray] = []
        self._union_b: List[np.ndarray] = []
        self._union_via: List[Tuple[np.ndarray, str]] = []
        self.frozen: List[Tuple[np.ndarray, str]] = []
        self._labels = WeakIdKeyDictionary()
        #: zero-filled buffers made by ``new_zeros`` from labelled tensors
        #: -> the sizes asked for (see ``handlers.concat.setitem``).
        self.zero_buffers = WeakIdKeyDictionary()
        #: tensors of sizes made by ``torch._shape_as_tensor`` -> {position:
        #: ids of the channels whose width it holds} (handlers.shape).
        self.shape_data = WeakIdKeyDictionary()
        #: (tensor name, dim) -> ids of a parameter or buffer dimension.
        self.leaf_ids: Dict[Tuple[str, int], np.ndarray] = {}
        #: (tensor name, dim) -> role ('out', 'in' or 'param').
        self.leaf_roles: Dict[Tuple[str, int], str] = {}
        #: (tensor name, dim) -> conv groups of a grouped conv's input dim
        #: whose ids count over all its input channels (``Member.groups``).
        self.leaf_groups: Dict[Tuple[str, int], int] = {}
        self.leaf_names = WeakIdKeyDictionary()
        #: parameter name -> its first dim that is no channel dim (a conv
        #: weight's kernel dims, 2 on): an op that reads the weight itself
        #: (weight standardisation) gets no labels there.
        self.kernel_dims: Dict[str, int] = {}
        #: joint blocks, whose units must be slabs along one axis.
        self.joint: List[np.ndarray] = []
        #: (groups, per group) ids, e.g. a grouped conv's rows: every unit
        #: must own as many positions in each row (see resolve).
        self.balanced: List[np.ndarray] = []
        #: the same for grouped convs' input channels (balanced first).
        self.balanced_inputs: List[np.ndarray] = []
        #: pending attribute rules: (module, attr, old, axis ids).
        self.attr_rules: List[Tuple[str, str, object, np.ndarray]] = []
        #: width attributes of blocks, followed where even (module_attrs).
        self.soft_attr_rules: List[Tuple[str, str, object, np.ndarray]] = []
        #: multiply-accumulates per element of each weight, per sample.
        self.param_macs: Dict[str, float] = {}
        #: activation elements each output channel of a weight writes, per
        #: sample: weight name -> [channel dim, elements].
        self.channel_acts: Dict[str, List[int]] = {}
        #: MACs of ops without weights (matmuls of activations, norms,
        #: resizes), per sample: (site, MACs, ids of each labelled dim of the
        #: op's index space); see :mod:`mmcpd.comb.flops`.
        self.op_macs: List[Tuple[str, float, List[np.ndarray]]] = []
        #: Samples in the traced batch (op MACs are divided by it).
        self.batch = 1
        #: False while the forward runs what the deployed model does not
        #: (auxiliary heads): its ops are traced but cost nothing.
        self.counting = True
        #: index of the op whose handler runs now (see
        #: :class:`~mmcpd.comb.liveness.Liveness`), None outside them.
        self.current_op: Optional[int] = None
        #: each cost recorded, and the op it belongs to: (op, kind, args).
        self._costs: List[Tuple[Optional[int], str, tuple]] = []
        #: ops whose outputs reach no model output, so cost nothing
        #: (their sites, or their weights' names).
        self.dead: List[str] = []
        #: norms over channels: (module, ids of the normalised channels).
        self.channel_norms: List[Tuple[str, str, np.ndarray]] = []
        #: other ops mixing channels (softmax, reductions, ...): (module,
        #: op, call index, dim, keeps the dim, ids of the mixed channels).
        self.channel_mixes: List[tuple] = []
        self.warnings: List[str] = []
        #: why sizes computed in Python froze channels (warned only where
        #: that freezes a group, see :mod:`mmcpd.comb.sizes`).
        self.size_reasons: List[str] = []
        #: (module, attribute) -> float arithmetic Python did with that int
        #: attribute (``channels ** -0.5``): it must not follow a width
        self.attr_math: Dict[Tuple[str, str], str] = {}

    # ids ---------------------------------------------------------------
    def new_ids(self, shape: Sequence[int]) -> np.ndarray:
        count = int(np.prod(shape)) if len(shape) else 1
        ids = np.arange(self.num_elements, self.num_elements + count,
                        dtype=np.int64).reshape(tuple(shape))
        self.num_elements += count
        return ids

    def union(self, a: np.ndarray, b: np.ndarray, via: str = '') -> None:
        """Tie ``a`` and ``b`` position by position (after broadcasting)."""
        a, b = np.broadcast_arrays(a, b)
        if a.size:
            self._union_a.append(a.ravel())
            self._union_b.append(b.ravel())
            if via:
                self._union_via.append((a.ravel()[:1], via))

    def union_along(self, ids: np.ndarray, axes: Iterable[int]) -> None:
        """Tie all positions that differ only along ``axes``."""
        for axis in axes:
            if ids.shape[axis] > 1:
                first = np.take(ids, [0], axis=axis)
                self.union(ids, first)

    def freeze(self, ids: np.ndarray, reason: str) -> None:
        if ids.size:
            self.frozen.append((ids.ravel(), reason))

    def unions(self) -> Tuple[np.ndarray, np.ndarray]:
        if not self._union_a:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty
        return np.concatenate(self._union_a), np.concatenate(self._union_b)

    def via_marks(self) -> List[Tuple[int, str]]:
        return [(int(ids[0]), via) for ids, via in self._union_via]

    # costs -------------------------------------------------------------
    def add_param_macs(self, name: str, per_element: float) -> None:
        """Each element of weight ``name`` takes part in ``per_element``
        more multiply-accumulates per sample (an int where it is one)."""
        if self.counting:
            self._costs.append((self.current_op, 'param', (name, per_element)))
            self._add_param_macs(name, per_element)

    def _add_param_macs(self, name: str, per_element: float) -> None:
        if float(per_element).is_integer():
            per_element = int(per_element)
        self.param_macs[name] = self.param_macs.get(name, 0) + per_element

    def add_channel_acts(self, name: str, dim: int, per_channel: int) -> None:
        """Each channel along ``dim`` of weight ``name`` writes
        ``per_channel`` more activation elements per sample."""
        if self.counting:
            self._costs.append((self.current_op, 'acts',
                                (name, dim, per_channel)))
            self._add_channel_acts(name, dim, per_channel)

    def _add_channel_acts(self, name: str, dim: int,
                          per_channel: int) -> None:
        entry = self.channel_acts.setdefault(name, [dim, 0])
        entry[1] += int(per_channel)

    def add_op_macs(self, site: str, total: float,
                    factors: List[np.ndarray]) -> None:
        """An op of the traced batch costs ``total`` MACs, a product over
        the labelled dims whose ids are ``factors``."""
        if self.counting and total > 0:
            entry = (site, float(total) / max(self.batch, 1),
                     [f.ravel() for f in factors])
            self._costs.append((self.current_op, 'op', entry))
            self.op_macs.append(entry)

    def drop_dead(self, live: Iterable[int]) -> List[str]:
        """Keep the costs of the ``live`` ops only (and those recorded
        outside any op); returns the sites of the ops dropped."""
        live = set(live)
        dead = [
            c for c in self._costs if c[0] is not None and c[0] not in live
        ]
        if not dead:
            return []
        self.param_macs, self.channel_acts, self.op_macs = {}, {}, []
        for op, kind, args in self._costs:
            if op is not None and op not in live:
                continue
            if kind == 'param':
                self._add_param_macs(*args)
            elif kind == 'acts':
                self._add_channel_acts(*args)
            else:
                self.op_macs.append(args)
        sites = []
        for _, kind, args in dead:
            site = args[0] if kind == 'op' else f'`{args[0]}`'
            if site not in sites:
                sites.append(site)
        return sites

    # tensors -----------------------------------------------------------
    def register_leaf(self, tensor: torch.Tensor, name: str) -> None:
        self.leaf_names[tensor] = name

    def leaf_name(self, tensor) -> Optional[str]:
        if isinstance(tensor, torch.Tensor):
            return self.leaf_names.get(tensor)
        return None

    def leaf_dim(self, tensor: torch.Tensor, dim: int,
                 role: str = 'param') -> Optional[np.ndarray]:
        """Ids of one dimension of a parameter or buffer (made on demand)."""
        name = self.leaf_name(tensor)
        if name is None:
            return None
        dim = dim % tensor.dim()
        key = (name, dim)
        if self.leaf_groups.get(key, 1) > 1:
            # a grouped conv's input channels read again as columns
            self.freeze(self.leaf_ids[key], f'`{name}` read by another op')
            ids = self.new_ids((tensor.shape[dim], ))
            self.freeze(ids, f'`{name}` read by another op')
            return ids
        if key not in self.leaf_ids:
            self.leaf_ids[key] = self.new_ids((tensor.shape[dim], ))
        if role != 'param' or key not in self.leaf_roles:
            self.leaf_roles[key] = role
        return self.leaf_ids[key]

    def grouped_in_dim(self, weight: torch.Tensor,
                       groups: int) -> Optional[np.ndarray]:
        """Ids of a grouped conv weight's input channels, all ``groups *
        weight.shape[1]`` of them, ``(groups, per group)``: column ``j`` of
        conv group ``h`` is its own id (``Member.groups``), so that each
        conv group may keep other columns. None where the weight has no
        name, or its dim 1 already has ids of its own width (read by
        another op): the caller then ties columns across groups."""
        name = self.leaf_name(weight)
        if name is None:
            return None
        key = (name, 1)
        per_group = weight.shape[1]
        if key not in self.leaf_ids:
            self.leaf_ids[key] = self.new_ids((groups * per_group, ))
            self.leaf_groups[key] = groups
            self.leaf_roles[key] = 'in'
        if self.leaf_groups.get(key, 1) != groups:
            return None
        return self.leaf_ids[key].reshape(groups, per_group)

    def get(self, tensor) -> Labels:
        """Labels of ``tensor``; a leaf gets one block per dim of size > 1."""
        if not isinstance(tensor, torch.Tensor):
            return []
        labels = self._labels.get(tensor)
        if labels is not None:
            return labels
        name = self.leaf_name(tensor)
        if name is not None:
            end = self.kernel_dims.get(name, tensor.dim())
            labels = [
                Block((d, ), self.leaf_dim(tensor, d))
                for d in range(min(end, tensor.dim())) if tensor.shape[d] > 1
            ]
            self._labels[tensor] = labels
            return labels
        return []

    def set_frozen(self, tensor: torch.Tensor, reason: str) -> None:
        """Give ``tensor`` new ids, frozen, on every dim of size > 1: what it
        feeds must not be pruned through it."""
        blocks = []
        for d in range(tensor.dim()):
            if tensor.shape[d] > 1:
                ids = self.new_ids((tensor.shape[d], ))
                self.freeze(ids, reason)
                blocks.append(Block((d, ), ids))
        self.set(tensor, blocks)

    def set(self, tensor, labels: Labels) -> None:
        if not isinstance(tensor, torch.Tensor):
            return
        clean = []
        for block in labels:
            if block.ids.size == 0:
                continue
            if len(block.dims) > 1:
                self.joint.append(block.ids)
            clean.append(block)
        self._labels[tensor] = clean


def axis_of(labels: Labels, dim: int) -> Optional[Tuple[Block, int]]:
    """The block covering ``dim`` and the axis of ``dim`` inside it."""
    for block in labels:
        if dim in block.dims:
            return block, block.dims.index(dim)
    return None


def collapse(graph: LabelGraph, block: Block, axis: int) -> np.ndarray:
    """1-D ids along ``axis`` of a block, tying the other axes to it."""
    ids = np.moveaxis(block.ids, axis, 0)
    flat = ids.reshape(ids.shape[0], -1)
    if flat.shape[1] > 1:
        graph.union(flat, flat[:, :1])
    return flat[:, 0]


def dim_ids(graph: LabelGraph, labels: Labels,
            dim: int) -> Optional[np.ndarray]:
    """1-D ids of one dimension of a tensor, or None when unlabelled."""
    found = axis_of(labels, dim)
    if found is None:
        return None
    block, axis = found
    if len(block.dims) == 1:
        return block.ids
    return collapse(graph, block, axis)


def carries_channels_off(graph, x, dim: int) -> bool:
    """Whether channels label a dim of ``x`` other than ``dim``, the dim a
    layer with a weight contracts: the rows of a linear layer (MLP-Mixer's
    token mixing runs over the channels as rows), the batch of a conv
    (RepMLP folds channels into the batch of its partition perceptron).
    The layer's MACs then shrink with those channels too, so they are an
    op of the comb (``op_macs``), not ``param_macs`` of its weight."""
    dim = dim % x.dim()
    return any(d != dim for block in graph.get(x) for d in block.dims)


def rows_carry_channels(graph, x) -> bool:
    """:func:`carries_channels_off` the last dim (a linear layer's)."""
    return carries_channels_off(graph, x, -1)
