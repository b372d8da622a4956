"""The one rule most ops follow: map input dims to output dims and tie.

An op is described by, for each tensor input, a *key* per dimension: the
output dimension it becomes (an int), a name for a dimension that is
contracted between inputs (a str, e.g. ``'k'`` of a matmul), or None for a
dimension that disappears (reduced). Positions with the same key are tied
across inputs, and the output's labels are read off the inputs' blocks.

An input that is not labelled on a keyed dimension of size > 1 while another
input is (a constant added to a channel dimension) freezes those channels:
nothing could shrink the constant with them.
"""
from typing import Hashable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from mmcpd.comb.labels import Block, LabelGraph, Labels, collapse

Key = Optional[Hashable]


def _sort_key(key):
    return (isinstance(key, str), str(key))


def _broadcast(small: Sequence[int], wide: Sequence[int]) -> bool:
    """Whether ids of shape ``small`` broadcast onto ``wide``: every dim
    equal or one wide, and some one wide where the other is not."""
    return len(small) == len(wide) and small != wide and all(
        a == b or a == 1 for a, b in zip(small, wide))


def couple(graph: LabelGraph,
           items: Sequence[Tuple[Labels, Sequence[int], Sequence[Key]]],
           via: str) -> Labels:
    """Tie the inputs of an op and return the labels of its output.

    Args:
        graph (LabelGraph): The trace's labels.
        items (list[tuple]): For each tensor input, ``(labels, shape,
            keys)`` with one key per dimension.
        via (str): ``'op@module'``, for messages.

    Returns:
        list[Block]: Labels of the output, whose dims are the int keys.
    """
    keyed: List[Tuple[Tuple[Key, ...], np.ndarray]] = []
    unlabelled = set()
    for labels, shape, keys in items:
        covered = set()
        for block in labels:
            block_keys = [keys[d] for d in block.dims]
            covered.update(block.dims)
            drop = [i for i, k in enumerate(block_keys) if k is None]
            if len(drop) == len(block_keys):
                continue
            ids = block.ids
            if drop:
                graph.union_along(ids, drop)
                index = tuple(0 if k is None else slice(None)
                              for k in block_keys)
                ids = ids[index]
                block_keys = [k for k in block_keys if k is not None]
            keyed.append((tuple(block_keys), ids))
        for d, key in enumerate(keys):
            if key is not None and shape[d] > 1 and d not in covered:
                unlabelled.add(key)

    for keys, ids in keyed:
        fixed = [i for i, k in enumerate(keys) if k in unlabelled]
        if fixed and len(fixed) < len(keys):
            # a joint block (heads, head dim) keeps those axes whole: its
            # units run along the others (DaViT's channel attention)
            graph.union_along(ids, fixed)
        elif fixed:
            graph.freeze(ids, f'meets an unlabelled tensor in {via}')

    # identical key sets: tie position by position
    canonical = {}
    for keys, ids in keyed:
        order = sorted(range(len(keys)), key=lambda i: _sort_key(keys[i]))
        ckeys = tuple(keys[i] for i in order)
        cids = np.transpose(ids, order)
        if ckeys in canonical:
            first = canonical[ckeys]
            if first.shape == cids.shape:
                graph.union(first, cids, via)
            elif _broadcast(first.shape, cids.shape):
                # a one-wide labelled dim spread over a wider one (SAC's
                # one-channel switch times a feature map): the wide side's
                # channels go on their own, the one-wide one stays
                graph.freeze(first, f'broadcast over channels in {via}')
                canonical[ckeys] = cids
            elif _broadcast(cids.shape, first.shape):
                graph.freeze(cids, f'broadcast over channels in {via}')
            else:
                graph.freeze(first, f'shape mismatch in {via}')
                graph.freeze(cids, f'shape mismatch in {via}')
        else:
            canonical[ckeys] = cids

    # overlapping key sets: tie along each shared key
    sets = list(canonical.items())
    for i in range(len(sets)):
        for j in range(i + 1, len(sets)):
            (ka, ia), (kb, ib) = sets[i], sets[j]
            for key in set(ka).intersection(kb):
                a = collapse(graph, Block(ka, ia), ka.index(key))
                b = collapse(graph, Block(kb, ib), kb.index(key))
                if a.shape == b.shape:
                    graph.union(a, b, via)

    # the output: int keys; contracted (str) axes are summed over, so the
    # positions along them are tied into one
    out: Labels = []
    taken = set()
    candidates = []
    for keys, ids in sets:
        contracted = [i for i, k in enumerate(keys) if not isinstance(k, int)]
        if contracted:
            if len(contracted) == len(keys):
                continue
            graph.union_along(ids, contracted)
            ids = ids[tuple(0 if i in contracted else slice(None)
                            for i in range(len(keys)))]
            keys = tuple(k for k in keys if isinstance(k, int))
        candidates.append((keys, ids))
    for keys, ids in sorted(candidates, key=lambda kv: -len(kv[0])):
        if taken.intersection(keys):
            continue
        taken.update(keys)
        out.append(Block(tuple(keys), ids))
    return out


def broadcast_keys(shape: Sequence[int],
                   out_shape: Sequence[int]) -> List[Key]:
    """Keys of an input broadcast against an output (numpy rules)."""
    offset = len(out_shape) - len(shape)
    keys: List[Key] = []
    for d, size in enumerate(shape):
        od = d + offset
        if od >= 0 and (size == out_shape[od] or size == 1):
            keys.append(od)
        else:
            keys.append(None)
    return keys


def tensor_items(graph: LabelGraph, tensors: Sequence[torch.Tensor],
                 out_shape: Sequence[int]):
    """``couple`` items of inputs broadcast against the output."""
    return [(graph.get(t), tuple(t.shape), broadcast_keys(t.shape, out_shape))
            for t in tensors]
