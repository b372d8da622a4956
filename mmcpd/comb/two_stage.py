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
tensor_forward`.

Sparse R-CNN and QueryInst select nothing (their proposals are learned
embeddings, refined by every stage), but mmdet's ``SparseRoIHead.forward``
is its training step: it matches each stage's boxes to ground truth
(Hungarian assignment, which tensor mode has no data for, and which jumps
on round-off as NMS does) and runs the mask head on the matched boxes
only. Their forward here (:func:`learned_proposal_forward`) runs every
stage as ``predict`` does, on all the learned proposals, and the last
stage's mask head on all its refined boxes.
"""
from typing import Sequence

import torch
from torch import nn

from mmcpd.comb.mmdet_kind import is_mmdet

__all__ = ['PROPOSAL_SIDES', 'fixed_proposals', 'selects_proposals',
           'two_stage_forward', 'cascade_rpn_outputs', 'learns_proposals',
           'learned_proposal_forward']

#: Sides of the fixed square proposals, in pixels: with the RoI
#: extractors' ``finest_scale`` of 56 they fall on FPN levels 0, 1, 2, 3
#: (``floor(log2(side / 56))``), so every level reaches the RoI head.
PROPOSAL_SIDES = (32, 128, 256, 512)


def selects_proposals(model: nn.Module) -> bool:
    """Whether ``model`` is an MMDetection two-stage detector whose RPN
    head picks its proposals by NMS (the RPN family of ``AnchorHead``, and
    ``CascadeRPNHead``, whose stages are); its deterministic forward is
    :func:`two_stage_forward`."""
    if not is_mmdet(model, 'TwoStageDetector'):
        return False
    rpn = getattr(model, 'rpn_head', None)
    cfg = getattr(rpn, 'test_cfg', None)
    return (isinstance(rpn, nn.Module)
            and (is_mmdet(rpn, 'AnchorHead')
                 or is_mmdet(rpn, 'CascadeRPNHead'))
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
    if is_mmdet(model.rpn_head, 'CascadeRPNHead'):
        rpn_outs = cascade_rpn_outputs(model.rpn_head, feats, samples)
    else:
        rpn_outs = model.rpn_head(feats)
    proposals = fixed_proposals(samples, feats[0])
    roi_outs = model.roi_head.forward(feats, proposals, samples)
    return rpn_outs, roi_outs


def cascade_rpn_outputs(rpn: nn.Module, feats: Sequence,
                        samples: Sequence) -> tuple:
    """The raw outputs of every stage of an MMDetection ``CascadeRPNHead``,
    as its ``predict`` computes them before the last stage's selection.

    The head has no ``forward``: each stage adapts its conv to the anchors
    that the stage before refined (a deformable conv whose offsets come
    from the anchors, or a dilated conv), so the stages run on each image's
    anchors (``get_anchors``, ``anchor_offset``, ``refine_bboxes``: box
    decoding, continuous in the weights).

    Returns:
        tuple: Per stage ``(cls_scores, bbox_preds)`` per level (the first
        stages have no classifier: ``None`` scores are left out).
    """
    metas = [sample.metainfo for sample in samples]
    featmap_sizes = [feat.shape[-2:] for feat in feats]
    anchors, _ = rpn.stages[0].get_anchors(
        featmap_sizes, metas, device=feats[0].device)
    outs = []
    x = feats
    for i, stage in enumerate(rpn.stages):
        offsets = None
        if stage.adapt_cfg['type'] == 'offset':
            offsets = stage.anchor_offset(anchors, stage.anchor_strides,
                                          featmap_sizes)
        x, cls_score, bbox_pred = stage(x, offsets)
        outs.append(tuple(out for out in (cls_score, bbox_pred)
                          if out is not None and out[0] is not None))
        if i < rpn.num_stages - 1:
            anchors = stage.refine_bboxes(anchors, bbox_pred, metas)
    return tuple(outs)


def learns_proposals(model: nn.Module) -> bool:
    """Whether ``model`` is an MMDetection two-stage detector with a
    ``SparseRoIHead`` (Sparse R-CNN, QueryInst): learned proposals refined
    stage by stage, whose mmdet ``forward`` needs ground truth; its
    forward is :func:`learned_proposal_forward`."""
    return (is_mmdet(model, 'TwoStageDetector')
            and is_mmdet(getattr(model, 'roi_head', None), 'SparseRoIHead')
            and isinstance(getattr(model, 'rpn_head', None), nn.Module))


def learned_proposal_forward(model: nn.Module, inputs: torch.Tensor,
                             samples: Sequence) -> tuple:
    """The raw outputs of every stage of a :func:`learns_proposals`
    detector, on all its learned proposals, without ground truth.

    As ``SparseRoIHead.predict_bbox`` does: the RPN head's ``predict``
    gives the proposals (the learned boxes scaled to each image, and the
    learned proposal features); each stage's ``_bbox_forward`` refines the
    boxes and the object features, which the next stage takes. Where the
    head has masks, the last stage's mask head runs on all its refined
    boxes and attention features (``predict_mask`` runs it on the
    top-scoring boxes: a top-k jumps on round-off, all boxes do not; the
    other stages' mask heads serve training only, as in ``predict``).

    Returns:
        tuple: Per stage ``(cls_score, decoded_bboxes)``, then
        ``(mask_preds, )`` where the head has masks.
    """
    from mmdet.structures.bbox import bbox2roi
    head = model.roi_head
    feats = model.extract_feat(inputs)
    proposals = model.rpn_head.predict(feats, samples)
    metas = [sample.metainfo for sample in samples]
    object_feats = torch.cat([res.features[None] for res in proposals])
    boxes = [res.bboxes for res in proposals]
    outs = []
    for stage in range(head.num_stages):
        rois = bbox2roi(boxes)
        res = head._bbox_forward(stage, feats, rois, object_feats, metas)
        object_feats = res['object_feats']
        boxes = res['detached_proposals']
        outs.append((res['cls_score'], res['decoded_bboxes']))
    if head.with_mask:
        masks = head._mask_forward(head.num_stages - 1, feats,
                                   bbox2roi(boxes), res['attn_feats'])
        outs.append((masks['mask_preds'], ))
    return tuple(outs)
