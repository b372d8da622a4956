"""A deterministic tensor-mode forward for YOLACT and CondInst.

MMDetection's ``SingleStageInstanceSegmentor._forward`` runs the box
head's ``loss`` on the samples' ground truth, only to pick the positive
priors whose outputs the mask head takes (YOLACT's mask coefficients,
CondInst's dynamic kernels). Tensor mode has no ground truth, and the
loss is no part of the network: in the graph, it would be counted as
FLOPs and exported to ONNX with shapes that depend on values. At test
time, ``predict`` picks the positives by score and NMS, which jump on
round-off. As :mod:`mmcpd.comb.two_stage` runs the RoI head on fixed
proposals, the forward here runs:

* backbone and neck (``extract_feat``);
* the box head's raw outputs;
* the mask head on fixed positives (:func:`fixed_positive_indices`: the
  first prior at the centre of every level), gathered from the box
  head's outputs as its ``get_positive_infos`` gathers them.

Each box head keeps its positives' fields its own way, so the heads are
named: ``YOLACTHead`` (``coeffs``) and ``CondInstBboxHead`` (BoxInst's
head included: ``param_preds``, ``points``, ``strides``).
"""
from typing import List, Sequence, Tuple

import torch
from torch import nn

from mmcpd.comb.mmdet_kind import is_mmdet

__all__ = ['masks_from_positives', 'fixed_positive_indices',
           'fixed_positive_forward']

#: Box heads whose mask head takes positives, and how they are gathered.
_HEADS = ('YOLACTHead', 'CondInstBboxHead')


def _head_kind(head) -> str:
    return next((name for name in _HEADS if is_mmdet(head, name)), '')


def masks_from_positives(model: nn.Module) -> bool:
    """Whether ``model`` is an MMDetection ``SingleStageInstanceSegmentor``
    whose mask head takes the positives of a box head of :data:`_HEADS`
    (YOLACT, CondInst, BoxInst); its forward is
    :func:`fixed_positive_forward`."""
    return (is_mmdet(model, 'SingleStageInstanceSegmentor')
            and bool(getattr(model, 'with_bbox', False))
            and bool(_head_kind(getattr(model, 'bbox_head', None))))


def fixed_positive_indices(sizes: Sequence[Tuple[int, int]],
                           priors_per_location: int) -> List[int]:
    """Indices, into the priors of all levels flattened as the heads
    flatten them (level, row, column, prior), of the first prior at the
    centre ``(H // 2, W // 2)`` of each level of ``sizes``."""
    found, start = [], 0
    for height, width in sizes:
        centre = (height // 2) * width + width // 2
        found.append(start + centre * priors_per_location)
        start += height * width * priors_per_location
    return found


def _flat(per_level: Sequence[torch.Tensor], channels: int) -> torch.Tensor:
    """``(N, A * C, H, W)`` per level -> ``(N, sum(H * W * A), C)``."""
    return torch.cat([
        t.permute(0, 2, 3, 1).reshape(t.shape[0], -1, channels)
        for t in per_level
    ], 1)


def fixed_positive_forward(model: nn.Module, inputs: torch.Tensor,
                           samples: Sequence) -> tuple:
    """The raw outputs of a :func:`masks_from_positives` detector's box
    head, and its mask head's on the fixed positives, without ground
    truth.

    Returns:
        tuple: ``(bbox_outs, mask_outs)``: what the box head's ``forward``
        returns, and the mask head's instance masks (tensors only: YOLACT's
        semantic branch gives None at test time).
    """
    from mmengine.structures import InstanceData
    head = model.bbox_head
    feats = model.extract_feat(inputs)
    outs = head(feats)
    sizes = [tuple(int(s) for s in t.shape[-2:]) for t in outs[0]]
    if _head_kind(head) == 'YOLACTHead':
        inds = fixed_positive_indices(sizes, head.num_base_priors)
        coeffs = _flat(outs[2], head.num_protos)
        infos = [InstanceData(coeffs=c[inds]) for c in coeffs]
    else:  # CondInstBboxHead: one point per location
        inds = fixed_positive_indices(sizes, 1)
        params = _flat(outs[3], head.num_params)
        priors = torch.cat(
            head.prior_generator.grid_priors(
                sizes, dtype=params.dtype, device=params.device,
                with_stride=True))[inds]
        infos = [
            InstanceData(param_preds=p[inds], points=priors[:, :2],
                         strides=priors[:, 2]) for p in params
        ]
    masks = model.mask_head.forward(feats, infos)
    return outs, [t for t in masks if t is not None]
