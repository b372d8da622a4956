"""Cascade RPN (issue 25): the tensor-mode forward of a two-stage detector
whose ``CascadeRPNHead`` selects proposals by NMS runs every RPN stage on
its anchors and the RoI head on fixed proposals
(:func:`mmcpd.comb.two_stage.cascade_rpn_outputs`), with no selection that
round-off could change.

A small Cascade RPN Faster R-CNN: ResNet-18, one 64x64 image.
"""
import mmdet.models  # noqa: F401  (tools/install.sh installs mmdet 3.3)
import torch

from mmcpd.apis import build_model_from_cfg
from mmcpd.comb.tensor_mode import det_data_samples, tensor_forward
from mmcpd.comb.two_stage import selects_proposals
from mmcpd.prune.surgery.verify import randomize_model
from mmcpd.utils.config import load_config

SIZE = 64


def _small():
    cfg = load_config(
        'mmdet::cascade_rpn/cascade-rpn_faster-rcnn_r50-caffe_fpn_1x_coco.py')
    cfg.merge_from_dict({
        'model.backbone.depth': 18,
        'model.neck.in_channels': [64, 128, 256, 512],
    })
    return cfg


def test_cascade_rpn_stages_without_selection():
    torch.manual_seed(0)
    model = randomize_model(build_model_from_cfg(_small()), seed=1).eval()
    assert selects_proposals(model)
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        rpn_outs, roi_outs = tensor_forward(model, x)
        again = tensor_forward(model, x)
        # the reference: what mmdet's predict hands its last stage's
        # selection (predict_by_feat)
        head = model.rpn_head
        found = {}

        def selection(anchors, cls_score, bbox_pred, **kwargs):
            found.update(cls_score=cls_score, bbox_pred=bbox_pred)
            return [None]

        head.stages[-1].predict_by_feat = selection
        head.predict(model.extract_feat(x), det_data_samples(x))
    assert len(rpn_outs) == head.num_stages == 2
    # the first stage has no classifier, the last one does
    assert len(rpn_outs[0]) == 1 and len(rpn_outs[1]) == 2
    cls_score, bbox_pred = rpn_outs[-1]
    for got, want in zip(cls_score + bbox_pred,
                         found['cls_score'] + found['bbox_pred']):
        assert torch.equal(got, want)
    for a, b in zip(torch.utils._pytree.tree_leaves((rpn_outs, roi_outs)),
                    torch.utils._pytree.tree_leaves(again)):
        assert torch.equal(a, b)
