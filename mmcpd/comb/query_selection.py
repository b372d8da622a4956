"""A deterministic tensor-mode forward for DETRs that select their queries.

DINO and two-stage Deformable DETR pick their decoder queries among the
encoder's positions by score (``torch.topk`` in ``pre_decoder``). As an
RPN's NMS (:mod:`mmcpd.comb.two_stage`), such a selection jumps when
round-off reorders two scores, so the masked and the pruned model may
decode other positions. Here ``pre_decoder`` runs with every ``topk``
replaced by a fixed pick: ``k`` positions evenly spread over the
candidates (over every feature level), their values gathered from the
scores. The rest of the forward (encoder, decoder, heads) is the model's
own, so every weight is traced and counted.

DDQ DETR selects by NMS instead: its ``pre_decoder`` keeps the encoder's
positions that mmcv's ``batched_nms`` keeps (in the order of their
scores, the first ``num_queries``), and its decoder masks the
self-attention between queries that NMS suppresses after every layer
(``select_distinct_queries``). Both jump on round-off as ``topk`` does, so
in the fixed forward mmcv's ``nms`` (which ``batched_nms`` looks up by
name) keeps every box, in the given order (:func:`keep_all_nms`): the
queries are the first ``num_queries`` positions, zero-padded as DDQ pads a
short pick, and no decoder layer masks any query.
"""
import contextlib
import sys
from typing import Iterator, Sequence

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from mmcpd.comb.mmdet_kind import is_mmdet

__all__ = [
    'selects_queries', 'fixed_query_forward', 'FixedTopk', 'keep_all_nms',
    'nms_keeps_all'
]


def selects_queries(model: nn.Module) -> bool:
    """Whether ``model`` is an MMDetection Deformable DETR (DINO and other
    subclasses included) that selects its queries (``as_two_stage``)."""
    return is_mmdet(model, 'DeformableDETR') and bool(
        getattr(model, 'as_two_stage', False))


def fixed_indices(n: int, k: int, like: torch.Tensor) -> torch.Tensor:
    """``k`` of ``n`` positions, evenly spread: ``round(i * (n - 1) / (k
    - 1))`` (distinct while ``k <= n``)."""
    if k == 1:
        return torch.zeros(1, dtype=torch.long, device=like.device)
    return torch.linspace(0, n - 1, k, device=like.device).round().long()


class FixedTopk(TorchFunctionMode):
    """Inside, ``torch.topk(x, k, dim)`` returns :func:`fixed_indices`
    along ``dim`` (the same for every other position) and the values of
    ``x`` there; other ops run as they are (traced, if a trace runs)."""

    _TOPK = {torch.topk, torch.Tensor.topk}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in self._TOPK:
            return func(*args, **kwargs)
        x = args[0]
        k = args[1] if len(args) > 1 else kwargs['k']
        dim = args[2] if len(args) > 2 else kwargs.get('dim', -1)
        dim = dim % x.dim()
        shape = [1] * x.dim()
        shape[dim] = k
        index = fixed_indices(x.shape[dim], k, x).view(shape)
        sizes = list(x.shape)
        sizes[dim] = k
        index = index.expand(sizes)
        return torch.return_types.topk((torch.gather(x, dim, index), index))


def keep_all_nms(boxes: torch.Tensor,
                 scores: torch.Tensor,
                 iou_threshold: float = 0.5,
                 offset: int = 0,
                 score_threshold: float = 0,
                 max_num: int = -1) -> tuple:
    """mmcv's ``nms(boxes, scores, ...)`` that suppresses nothing: every
    box is kept, in the given order (the first ``max_num`` if
    ``max_num > 0``), as ``(dets, keep)`` with ``dets`` the boxes and their
    scores, ``(n, 5)``. The thresholds are accepted and ignored: what they
    drop depends on the scores, which round-off reorders."""
    keep = torch.arange(boxes.shape[0], device=boxes.device)
    if max_num > 0:
        keep = keep[:max_num]
    dets = torch.cat((boxes[keep], scores[keep].reshape(-1, 1)), dim=1)
    return dets, keep


@contextlib.contextmanager
def nms_keeps_all() -> Iterator[None]:
    """Within the block, mmcv's ``nms`` as ``batched_nms`` finds it (the
    name ``nms`` in ``mmcv.ops.nms``) is :func:`keep_all_nms`; nothing
    changes if mmcv's NMS module is not imported."""
    module = sys.modules.get('mmcv.ops.nms')
    original = getattr(module, 'nms', None)
    if original is None:
        yield
        return
    module.nms = keep_all_nms
    try:
        yield
    finally:
        module.nms = original


def fixed_query_forward(model: nn.Module, inputs: torch.Tensor,
                        samples: Sequence) -> tuple:
    """``model(inputs, samples, mode='tensor')`` with its ``pre_decoder``
    picking :func:`fixed_indices` (see :class:`FixedTopk`) and mmcv's NMS,
    anywhere in the forward, keeping every box (:func:`nms_keeps_all`;
    DDQ DETR's distinct queries)."""
    own = vars(model).get('pre_decoder')
    pre_decoder = model.pre_decoder

    def fixed(*args, **kwargs):
        with FixedTopk():
            return pre_decoder(*args, **kwargs)

    model.pre_decoder = fixed
    try:
        with nms_keeps_all():
            return model(inputs, samples, mode='tensor')
    finally:
        if own is None:
            del model.pre_decoder
        else:
            model.pre_decoder = own
