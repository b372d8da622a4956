"""Sparse R-CNN and QueryInst (issue 25): learned proposals kept valid by
the checks' randomisation, and a tensor-mode forward without ground truth
(:func:`mmcpd.comb.two_stage.learned_proposal_forward`).

A small Sparse R-CNN / QueryInst: ResNet-18, 2 stages, 16 proposals, one
64x64 image.
"""
import mmdet.models  # noqa: F401  (tools/install.sh installs mmdet 3.3)
import pytest
import torch
from mmengine.model import BaseModule
from torch import nn

from mmcpd.apis import build_model_from_cfg
from mmcpd.comb.tensor_mode import det_data_samples, tensor_forward
from mmcpd.comb.two_stage import learns_proposals
from mmcpd.prune.surgery.verify import randomize_model
from mmcpd.testing.random_init import positive_by_init
from mmcpd.utils.config import load_config

SIZE = 64


def _small(path):
    cfg = load_config(path)
    stages = 2
    cfg.merge_from_dict({
        'model.backbone.depth': 18,
        'model.neck.in_channels': [64, 128, 256, 512],
        'model.rpn_head.num_proposals': 16,
        'model.roi_head.num_stages': stages,
        'model.roi_head.stage_loss_weights': [1] * stages,
    })
    for key in ('bbox_head', 'mask_head', 'bbox_roi_extractor',
                'mask_roi_extractor'):
        if isinstance(cfg.model.roi_head.get(key), list):
            cfg.model.roi_head[key] = cfg.model.roi_head[key][:stages]
    cfg.model.train_cfg.rcnn = cfg.model.train_cfg.rcnn[:stages]
    cfg.model.test_cfg.rcnn.max_per_img = 16  # QueryInst: = proposals
    return cfg


class _Proposals(BaseModule):
    """Boxes ``(cx, cy, w, h)`` that ``init_weights`` sets as Sparse
    R-CNN's ``EmbeddingRPNHead`` does, a zero-initialised scale and a
    tiny layer scale."""

    def __init__(self):
        super().__init__()
        self.boxes = nn.Embedding(8, 4)
        self.zero_scale = nn.Parameter(torch.zeros(4))
        self.layer_scale = nn.Parameter(1e-5 * torch.ones(4))

    def init_weights(self):
        super().init_weights()
        nn.init.constant_(self.boxes.weight[:, :2], 0.5)
        nn.init.constant_(self.boxes.weight[:, 2:], 1)


def test_positive_parameters_stay_positive():
    model = positive_by_init(_Proposals())
    assert bool((model.boxes.weight > 0).all())
    randomize_model(model, seed=3)
    boxes = model.boxes.weight.detach()
    assert bool((boxes > 0).all())
    assert boxes[:, 2:].std() > 0.05  # drawn, not left at 1
    # scales that init hides are still drawn across zero
    for scale in (model.zero_scale, model.layer_scale):
        assert scale.abs().max() > 1e-3 and bool((scale < 0).any())


def test_positive_by_init_changes_nothing_else():
    model = _Proposals()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    positive_by_init(model)
    assert not torch.equal(before['boxes.weight'], model.boxes.weight)
    assert torch.equal(before['zero_scale'], model.zero_scale)
    assert torch.equal(before['layer_scale'], model.layer_scale)


@pytest.mark.parametrize('path, masks', [
    ('mmdet::sparse_rcnn/sparse-rcnn_r50_fpn_1x_coco.py', False),
    ('mmdet::queryinst/queryinst_r50_fpn_1x_coco.py', True),
])
def test_learned_proposal_forward(path, masks):
    torch.manual_seed(0)
    model = randomize_model(positive_by_init(build_model_from_cfg(
        _small(path))), seed=1).eval()
    assert learns_proposals(model)
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        out = tensor_forward(model, x)  # no ground truth needed
        again = tensor_forward(model, x)
        # the reference: mmdet's predict_bbox (predict's boxes; its masks'
        # pasting fails on random boxes)
        samples = det_data_samples(x)
        feats = model.extract_feat(x)
        found = model.roi_head.predict_bbox(
            feats, [s.metainfo for s in samples],
            model.rpn_head.predict(feats, samples),
            model.roi_head.test_cfg, rescale=False)[0]
    assert len(out) == (3 if masks else 2)  # stages, the last one's masks
    for stage, again_stage in zip(out, again):
        for a, b in zip(stage, again_stage):
            assert torch.equal(a, b)
    for cls_score, boxes in out[:2]:
        assert cls_score.shape == (1, 16, 80) and boxes.shape == (16, 4)
    if masks:  # one mask per proposal
        assert out[2][0].shape[0] == 16
    # predict's boxes are the last stage's, chosen by score
    last = out[1][1]
    assert len(found.bboxes) == 16
    for box in found.bboxes:
        assert bool((last - box).abs().amax(1).min() < 1e-5)


class _Downloads(_Proposals):
    """A backbone that loads its checkpoint itself in ``init_weights``."""

    def init_weights(self):
        raise OSError('Name or service not known')


def test_positive_by_init_warns_where_init_fails():
    model = _Downloads()
    before = model.boxes.weight.detach().clone()
    with pytest.warns(UserWarning, match='_Downloads.init_weights'):
        positive_by_init(model)
    assert torch.equal(before, model.boxes.weight)
