"""Sizes that Python computes from tensor shapes, followed symbolically.

Attention code reads a width off a tensor and computes other sizes from it:
``B, N, C = x.shape; qkv.reshape(B, N, 3, self.num_heads, C //
self.num_heads)``. No torch op ties ``C`` (the residual width) to the head
dim of ``qkv``, yet after pruning the reshape asks for ``C' // num_heads'``.
So while the model is traced, every size of a labelled (channel) dim that
the forward reads (``x.shape``, ``x.size()``) is a :class:`SymInt`: an int
that remembers the channels it counts. ``//`` and ``*`` by plain ints keep
the record; when the int reaches a reshape as a size, :func:`tie_size` ties
the channels it counts to the positions of the dim it sizes, so that every
unit removes as many of each as keeps the arithmetic true:

* ``C`` itself: position ``c`` of the new dim is channel ``c``;
* ``C // k`` next to a dim of ``k`` (heads, head dim): channel ``i * s + j``
  is position ``(i, j)``; whichever axis the units of that joint block run
  along (whole heads, or the same index of every head), removing one removes
  ``s`` (or ``k``) channels, and ``C' // k'`` stays the new size;
* ``C // k`` alone: the ``k`` channels ``j, s + j, ...`` go with position
  ``j``; ``C * m``: position ``i * C + c`` goes with channel ``c``.

Arithmetic that cannot be followed (``C ** -0.5``, ``C / 2``, a floor
division that does not divide) and ops other than reshapes that take such a
size freeze the channels, with a warning that names the op and the module.
Values computed at ``__init__`` (``self.scale = head_dim ** -0.5``) are
constants of the module: they stay as they are when a head dim is pruned,
in the masked model as in the pruned one.
"""
import contextlib
import dataclasses
from typing import Iterator, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from mmcpd.comb.labels import Block, LabelGraph, Labels, axis_of, collapse
from mmcpd.comb.result import CombResult

#: the getters of ``Tensor.shape`` and ``Tensor.size``
SHAPE_FUNCS = {torch.Tensor.shape.__get__, torch.Tensor.size}


class SymInt(int):
    """An int that counts channels: ``len(channels) * num // den``.

    Args:
        value (int): The value.
        graph (LabelGraph): The trace's labels.
        block (Block): The labels of the dim it was read off.
        axis (int): The axis of ``block`` it counts.
        num (int): Multiplier. Defaults to 1.
        den (int): Divisor (exact). Defaults to 1.
        where (str): The op and module that read it, for messages.
    """

    def __new__(cls, value, graph, block, axis, num=1, den=1, where='',
                heads=False):
        self = super().__new__(cls, value)
        self.graph, self.block, self.axis = graph, block, axis
        self.num, self.den, self.where = num, den, where
        #: ``C // k`` with ``k`` a module attribute (``num_heads``)
        self.heads = heads
        return self

    def _derive(self, num: int, den: int, heads: bool = False) -> 'SymInt':
        value = self.block.ids.shape[self.axis] * num
        return SymInt(value // den, self.graph, self.block, self.axis, num,
                      den, self.where, heads)

    def __floordiv__(self, other):
        if isinstance(other, torch.Tensor):
            return NotImplemented  # the tensor op sees this int
        if not _plain(other) or other <= 0:
            return int(self) // (int(other) if isinstance(other, int) else
                                 other)
        out = int(self) // other
        if int(self) % other:
            self.freeze(f'`{int(self)} // {other}` does not divide')
            return out
        heads = (isinstance(other, AttrInt) and self.num == 1 and
                 self.den == 1)
        return self._derive(self.num, self.den * other, heads)

    def __mul__(self, other):
        if isinstance(other, torch.Tensor):
            return NotImplemented  # the tensor op sees this int
        if not _plain(other) or other <= 0:
            return int(self) * (int(other) if isinstance(other, int) else
                                other)
        return self._derive(self.num * other, self.den)

    __rmul__ = __mul__

    def __truediv__(self, other):
        self._math(f'`{int(self)} / {other}`')
        return int(self) / other

    def __rtruediv__(self, other):
        self._math(f'`{other} / {int(self)}`')
        return other / int(self)

    def __pow__(self, other, *mod):
        self._math(f'`{int(self)} ** {other}`')
        return pow(int(self), other, *mod)

    def __rpow__(self, other, *mod):
        self._math(f'`{other} ** {int(self)}`')
        return pow(other, int(self), *mod)

    def __float__(self):
        self._math(f'`float({int(self)})`')
        return float(int(self))

    def __eq__(self, other):
        """``value.size(2) == self.embed_dims`` (an assert in mmdet's
        ``ConditionalAttention``): a module attribute found equal to this
        width follows it, drops by one per removed channel, as a soft rule
        (:mod:`~mmcpd.comb.module_attrs`): where it would follow two
        widths, or unevenly, it is left as it is and never freezes a
        group (a check it then fails, fails verification)."""
        same = int(self) == other
        if same is True and isinstance(other, AttrInt) and \
                self.num == self.den == 1:
            self.graph.soft_attr_rules.append(
                (other.scope, other.attr, int(other), self.channels()))
        return same

    __hash__ = int.__hash__

    def __reduce__(self):  # copies and pickles are plain ints
        return (int, (int(self), ))

    def freeze(self, what: str) -> None:
        """Freeze the channels counted: Python uses their number in a way
        that pruning cannot follow."""
        reason = (f'a width read by {self.where} is used in Python '
                  f'arithmetic that pruning cannot follow ({what})')
        _freeze(self.graph, self.block.ids, reason)

    def _math(self, what: str) -> None:
        """Python computes ``what`` from this width: freeze it.

        Except a head dim, ``C // num_heads`` with ``num_heads`` a module
        attribute (``scaling = float(head_dims) ** -0.5`` in mmdet's
        ``ConditionalAttention``): it stays what it is where whole heads
        go and ``num_heads`` follows them, so the channels are tied into
        heads of ``C // num_heads`` (channel ``i * s + j`` in head ``i``)
        instead. Where ``num_heads`` does not follow, verification finds
        the group and freezes it.
        """
        if self.heads:
            src = self.channels()
            self.graph.union_along(src.reshape(self.den, -1), [1])
        else:
            self.freeze(what)

    def channels(self) -> np.ndarray:
        """1-D ids of the counted positions (ties the other axes of a joint
        block to them: their number is what Python reads)."""
        if self.block.ids.ndim == 1:
            return self.block.ids
        return collapse(self.graph, self.block, self.axis)


class AttrInt(int):
    """An int attribute of a module, read while the model is traced: a
    reshape sized by it updates that attribute, and no other of the same
    value (LeViT's ``num_heads`` and ``key_dim`` are both 16).

    Args:
        value (int): The value.
        scope (str): The module's qualified name.
        attr (str): The attribute's name.
    """

    def __new__(cls, value, scope, attr, math_uses=None):
        self = super().__new__(cls, value)
        self.scope, self.attr = scope, attr
        self.math_uses = math_uses
        return self

    def _used(self, what: str) -> None:
        """Record that Python computes ``what`` from this attribute: if it
        follows a width, pruning would change the result
        (``self.channels ** -0.5`` as a scale), so it must not."""
        if self.math_uses is not None:
            self.math_uses.setdefault((self.scope, self.attr), what)

    def __pow__(self, other, *mod):
        self._used(f'`{self.attr} ** {other}`')
        return pow(int(self), other, *mod)

    def __rpow__(self, other, *mod):
        self._used(f'`{other} ** {self.attr}`')
        return pow(other, int(self), *mod)

    def __truediv__(self, other):
        self._used(f'`{self.attr} / {other}`')
        return int(self) / other

    def __rtruediv__(self, other):
        self._used(f'`{other} / {self.attr}`')
        return other / int(self)

    def __float__(self):
        self._used(f'`float({self.attr})`')
        return float(int(self))

    def __reduce__(self):  # copies and pickles are plain ints
        return (int, (int(self), ))


@contextlib.contextmanager
def attribute_ints(model: nn.Module,
                   math_uses: Optional[dict] = None) -> Iterator[None]:
    """Inside, the public int attributes of every module are
    :class:`AttrInt`; restored on exit. ``math_uses`` collects, by
    ``(module, attribute)``, the float arithmetic Python does with them."""
    saved = []
    for name, module in model.named_modules():
        for k, v in list(vars(module).items()):
            if type(v) is int and not k.startswith('_'):
                saved.append((module, k, v))
                module.__dict__[k] = AttrInt(v, name, k, math_uses)
    try:
        yield
    finally:
        for module, k, v in saved:
            if isinstance(module.__dict__.get(k), AttrInt):
                module.__dict__[k] = v


def _freeze(graph: LabelGraph, ids: np.ndarray, reason: str) -> None:
    """Freeze ``ids``; warn only if that freezes a group (token dims read
    for window sizes are labelled too, but form no group)."""
    graph.freeze(ids, reason)
    graph.size_reasons.append(reason)


def size_warnings(result: CombResult, reasons: Sequence[str]) -> CombResult:
    """``result`` with a warning for each reason that froze a group."""
    used = {g.frozen for g in result.groups}
    found = [r for r in dict.fromkeys(reasons) if r in used]
    if not found:
        return result
    return dataclasses.replace(result, warnings=result.warnings + found)


def is_int(value) -> bool:
    """A Python int as the forward may see it while traced: plain, or one
    the tracer marks (:class:`AttrInt`, :class:`SymInt`); not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _plain(value) -> bool:
    return type(value) in (int, AttrInt)


def symbolic_shape(graph: LabelGraph, func, args, out, where: str):
    """``out`` of a ``shape`` / ``size()`` call, with labelled dims as
    :class:`SymInt` (other dims and other calls: ``out`` itself)."""
    try:
        if func not in SHAPE_FUNCS or not args:
            return out
    except TypeError:  # unhashable callable
        return out
    x = args[0]
    if not isinstance(x, torch.Tensor) or x not in graph._labels:
        return out
    labels = graph._labels[x]
    if isinstance(out, torch.Size):
        return torch.Size(
            _sym(graph, labels, d, v, where) for d, v in enumerate(out))
    if _plain(out) and len(args) > 1 and _plain(args[1]):
        return _sym(graph, labels, args[1] % x.dim(), out, where)
    return out


def _sym(graph, labels: Labels, dim: int, value: int, where: str):
    found = axis_of(labels, dim)
    if found is None or value <= 1:
        return value
    block, axis = found
    return SymInt(value, graph, block, axis, where=where)


#: ops whose handlers tie their :class:`SymInt` sizes (reshapes)
SIZED = set()
#: ops that take sizes but whose handlers see what they make of them, as
#: before sizes were followed: equal splits and repeats stay equal, fixed
#: slices of channels freeze there (a split ties its computed sizes,
#: :func:`tie_split`)
SHAPED = {
    'split', 'chunk', 'split_with_sizes', 'tensor_split', 'unsafe_split',
    'expand', 'repeat', 'tile', 'narrow', '__getitem__', 'pad',
    'interpolate', 'roll'
}


def sym_args(value) -> List[SymInt]:
    """The :class:`SymInt` in arguments (lists, dicts and slices too)."""
    if isinstance(value, SymInt):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    elif isinstance(value, slice):
        value = [value.start, value.stop, value.step]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in sym_args(v)]
    return []


def untracked(graph: LabelGraph, syms: Sequence[SymInt], via: str) -> None:
    """An op that takes computed widths as sizes, but is no reshape: its
    result would not follow the pruned widths; freeze them."""
    reason = f'{via} takes a size computed from a channel width'
    for s in syms:
        _freeze(graph, s.block.ids, reason)


def tie_sizes(graph: LabelGraph,
              sizes: Sequence,
              labels: Labels,
              via: str,
              attrs: Sequence[int] = ()) -> None:
    """Tie each :class:`SymInt` size of a reshape to the dim it sizes.

    Args:
        graph (LabelGraph): The trace's labels.
        sizes (list): The requested sizes, one per output dim.
        labels (list[Block]): The output's labels.
        via (str): ``'op@module'``.
        attrs (list[int]): Values of the calling module's int attributes:
            a divisor among them (``num_heads``) follows the axis it sizes
            when that axis is pruned; another one (a literal ``4``) never
            changes, so the units must run along the computed size.
    """
    for dim, size in enumerate(sizes):
        if not isinstance(size, SymInt):
            continue
        found = axis_of(labels, dim)
        if found is None:
            reason = (f'{via} sizes a dim that is not a channel with a '
                      'channel width')
            _freeze(graph, size.block.ids, reason)
            continue
        _tie(graph, size, found[0], found[0].dims.index(dim), via, attrs)


def tie_split(graph: LabelGraph, sizes: Sequence, pieces: Sequence[Labels],
              dim: int, via: str, attrs: Sequence[int] = ()) -> None:
    """Tie the :class:`SymInt` sizes of a split to the pieces they size.

    ``torch.split(x, C)`` with ``C`` read off another tensor's channels
    (Deformable DETR splits its query embedding by the encoder's width)
    asks for ``C'`` after pruning: each piece of that size is tied to the
    channels ``C`` counts, as a reshape's size is (:func:`tie_sizes`), so
    they shrink together. Sizes given one by one go with their piece; one
    size for all pieces goes with each piece of that size, and a smaller
    last piece (a remainder) would not follow it: the channels are frozen.

    Args:
        graph (LabelGraph): The trace's labels.
        sizes (list): The split sizes as given: one for every piece, or
            one for all.
        pieces (list[list[Block]]): The labels of each piece.
        dim (int): The split dim.
        via (str): ``'op@module'``.
        attrs (list[int]): Values of the calling module's int attributes
            (see :func:`tie_sizes`).
    """
    if len(sizes) == len(pieces):
        pairs = list(zip(sizes, pieces))
    elif len(sizes) == 1:
        pairs = [(sizes[0], p) for p in pieces]
    else:
        return
    for size, labels in pairs:
        if not isinstance(size, SymInt):
            continue
        found = axis_of(labels, dim)
        if found is None:
            _freeze(graph, size.block.ids, f'{via} sizes a dim that is not '
                    'a channel with a channel width')
            continue
        block, axis = found
        if block.ids.shape[axis] != int(size):
            _freeze(graph, np.concatenate([size.block.ids.ravel(),
                                           block.ids.ravel()]),
                    f'{via}: a piece smaller than the split size (a '
                    'remainder) does not follow a computed width')
            continue
        _tie(graph, size, block, axis, via, attrs)


def _tie(graph: LabelGraph, size: SymInt, block: Block, axis: int, via: str,
         attrs: Sequence[int]) -> None:
    src = size.channels()
    ids = block.ids
    s, k, m = ids.shape[axis], size.den, size.num
    if m > 1 and k > 1:
        _freeze(graph, np.concatenate([src, ids.ravel()]),
                f'{via}: a size `C * {m} // {k}` is not followed')
        return
    if m > 1:  # position i * C + c of the dim goes with channel c
        moved = np.moveaxis(ids, axis, -1)
        outer, inner = _copies_layout(graph, moved, src, m)
        moved = moved.reshape(moved.shape[:-1] + (outer, m, inner))
        graph.union(moved, src.reshape(outer, 1, inner), via)
        return
    partner = _partner(ids.shape, axis, k) if k in attrs else None
    if partner is None:  # channels j, s + j, ... go with position j
        moved = np.moveaxis(ids, axis, -1)[..., None, :]
        graph.union(moved, src.reshape(k, s), via)
        return
    # a joint (k, s) split such as (heads, head dim): channel i * s + j is
    # position (i, j), whichever axis the units run along
    moved = np.moveaxis(ids, (partner, axis), (-2, -1))
    graph.union(moved, src.reshape(k, s), via)


def _copies_layout(graph: LabelGraph, moved: np.ndarray, src: np.ndarray,
                   m: int):
    """How a dim of ``m * C`` positions holds ``m`` copies of ``C``
    channels: ``(outer, inner)`` such that position ``(o, i, n)`` of
    ``(outer, m, inner)`` goes with channel ``o * inner + n``.

    ``(1, C)`` (``cat([a, b], -1)``) unless one copy of the channels is
    found there, in slabs of ``inner``: positions that are those channels,
    or were tied to them one to one by an earlier reshape. mmdet's
    conditional cross-attention concatenates content and position queries
    per head, ``cat([q.view(.., heads, C // heads), pos.view(..)],
    3).view(.., 2 * C)``, so head ``o`` holds its ``C // heads`` channels,
    then as many positions; tying by ``(1, C)`` there would tie heads to
    each other.
    """
    c = len(src)
    flat = moved.reshape(-1, moved.shape[-1])[0]
    where = {int(v): n for n, v in enumerate(src)}
    a, b = graph.unions()
    for x, y in ((a, b), (b, a)):
        hit = np.isin(x, flat) & np.isin(y, src)
        for u, v in zip(x[hit].tolist(), y[hit].tolist()):
            where.setdefault(u, where[v])
    pos = np.asarray([where.get(int(v), -1) for v in flat])
    for inner in [c] + [d for d in range(c - 1, 0, -1) if c % d == 0]:
        view = pos.reshape(c // inner, m, inner)
        for i in range(m):
            if np.array_equal(view[:, i, :].ravel(), np.arange(c)):
                return c // inner, inner
    return 1, c


def _partner(shape: Sequence[int], axis: int, k: int) -> Optional[int]:
    """The axis of size ``k`` next to ``axis`` (before it first)."""
    for other in (axis - 1, axis + 1):
        if 0 <= other < len(shape) and shape[other] == k:
            return other
    return None
