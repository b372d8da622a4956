"""A deterministic tensor-mode forward for two-stage detectors.

MMDetection's ``TwoStageDetector._forward`` runs the RPN's ``predict``:
the proposals are sorted by score and pruned by NMS before the RoI head
sees them. Such a selection jumps on float round-off: a masked and a
pruned model, equal up to round-off, pick other boxes (Mask R-CNN's
outputs then differ by 8.9e-2), verification freezes groups at random,
and mmcv's NMS takes float32 only. The comb needs the channel flow, not
the selection, so the forward of such a detector here is:

* backbone and neck (``extract_feat``);
* the RPN head's raw outputs (its scores and box deltas per level);
* the RoI head's ``forward`` (bbox, mask, every cascade stage) on fixed
  proposals drawn from each image's shape (:func:`fixed_proposals`),
  returning its raw outputs.

Every step is a continuous function of the weights, so the masked and the
pruned model agree to round-off; the comb, verification, FLOPs counting
and export all run it through :func:`~mmcpd.comb.tensor_mode.
tensor_forward`. Detectors whose RPN selects nothing by NMS (Sparse
R-CNN's learned proposals) keep mmdet's own forward.
"""
from typing import Sequence

import torch
from torch import nn

from mmcpd.comb.mmdet_kind import is_mmdet

__all__ = ['PROPOSAL_SIDES', 'fixed_proposals', 'selects_proposals',
           'two_stage_forward']

#: Sides of the fixed square proposals, in pixels: with the RoI
#: extractors' ``finest_scale`` of 56 they fall on FPN levels 0, 1, 2, 3
#: (``floor(log2(side / 56))``), so every level reaches the RoI head.
PROPOSAL_SIDES = (32, 128, 256, 512)


def selects_proposals(model: nn.Module) -> bool:
    """Whether ``model`` is an MMDetection two-stage detector whose RPN
    head picks its proposals by NMS (the RPN family of ``AnchorHead``);
    its deterministic forward is :func:`two_stage_forward`."""
    if not is_mmdet(model, 'TwoStageDetector'):
        return False
    rpn = getattr(model, 'rpn_head', None)
    cfg = getattr(rpn, 'test_cfg', None)
    return (isinstance(rpn, nn.Module) and is_mmdet(rpn, 'AnchorHead')
            and cfg is not None and 'nms' in cfg
            and getattr(model, 'roi_head', None) is not None)


def fixed_proposals(samples: Sequence, like: torch.Tensor) -> list:
    """Per image, ``len(PROPOSAL_SIDES) * 4`` square boxes of each side
    in :data:`PROPOSAL_SIDES`, centred at the four points ``(W / 4, H /
    4)``, ``(3W / 4, H / 4)``, ... of its ``img_shape`` ``(H, W)``.

    Args:
        samples (list[DetDataSample]): The images' samples.
        like (Tensor): A feature map: the boxes' dtype and device.

    Returns:
        list[InstanceData]: One ``InstanceData(bboxes=...)`` per image,
        as the RPN's ``predict`` returns them.
    """
    from mmengine.structures import InstanceData
    found = []
    for sample in samples:
        height, width = (float(s) for s in sample.metainfo['img_shape'][:2])
        boxes = []
        for side in PROPOSAL_SIDES:
            for cy in (height / 4, 3 * height / 4):
                for cx in (width / 4, 3 * width / 4):
                    half = side / 2
                    boxes.append([cx - half, cy - half, cx + half, cy + half])
        found.append(InstanceData(bboxes=like.new_tensor(boxes)))
    return found


def two_stage_forward(model: nn.Module, inputs: torch.Tensor,
                      samples: Sequence) -> tuple:
    """The raw outputs of a two-stage detector's heads, without the RPN's
    selection.

    Returns:
        tuple: ``(rpn_outs, roi_outs)``: what the RPN head's ``forward``
        returns (scores and box deltas per level), and what the RoI head's
        ``forward`` returns on :func:`fixed_proposals`.
    """
    feats = model.extract_feat(inputs)
    rpn_outs = model.rpn_head(feats)
    proposals = fixed_proposals(samples, feats[0])
    roi_outs = model.roi_head.forward(feats, proposals, samples)
    return rpn_outs, roi_outs
