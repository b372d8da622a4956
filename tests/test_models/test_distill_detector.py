"""DistillWrapper on MMDetection detectors: a single-stage detector's
logits are the class score maps of every level of its dense head."""
import os.path as osp

import mmdet.models  # noqa: F401  (tools/install.sh installs mmdet 3.3)
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from mmcpd.comb.tensor_mode import det_data_samples, tensor_forward
from mmcpd.distill import CWDLoss
from mmcpd.models.distill_wrapper import DistillWrapper, logits_of
from mmcpd.prune.surgery.verify import randomize_model
from mmcpd.utils.config import load_config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = osp.join(REPO, 'configs', 'demo',
                'retinanet-r18-w16_1xb16_digits-det.py')
SIZE = 64


def _retinanet_cfg() -> dict:
    return Config.fromfile(DEMO).model.to_dict()


def _batch(seed: int):
    torch.manual_seed(seed)
    inputs = torch.randn(2, 3, SIZE, SIZE)
    samples = det_data_samples(inputs)
    for sample in samples:
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor([[8., 8., 40., 40.]]),
            labels=torch.tensor([3]))
    return inputs, samples


@pytest.fixture
def wrapper():
    with DefaultScope.overwrite_default_scope('mmdet'):
        torch.manual_seed(0)
        model = DistillWrapper(
            _retinanet_cfg(),
            distill_losses=[dict(type='CWDLoss', tau=1.0, loss_weight=1.0)],
            probe_shape=(3, SIZE, SIZE))
        # teacher and student differ, every parameter and buffer random
        randomize_model(model.student, seed=1)
        randomize_model(model.teacher, seed=2)
        model._teacher_copied.fill_(True)
        yield model


def test_detector_logits_are_every_level_of_the_dense_head(wrapper):
    inputs, samples = _batch(3)
    # in eval mode: the student's (randomised) BN statistics, as below
    wrapper.eval()
    with torch.no_grad():
        losses = wrapper.loss(inputs, samples)
    assert {'loss_cls', 'loss_bbox', 'loss_cwd'} <= set(losses)
    # by hand: the class score maps of the levels, CWD on each, the mean
    with torch.no_grad():
        s_levels = tensor_forward(wrapper.student, inputs)[0]
        t_levels = tensor_forward(wrapper.teacher, inputs)[0]
        levels = len(wrapper.student.extract_feat(inputs))
    # every FPN level, the shared head called on each
    assert len(s_levels) == levels > 1
    cwd = CWDLoss(tau=1.0, loss_weight=1.0)
    want = sum(cwd(s, t) for s, t in zip(s_levels, t_levels)) / levels
    assert losses['loss_cwd'].item() == pytest.approx(want.item(), rel=1e-4)
    # the gradient reaches the student's classification branch only
    wrapper.train()
    wrapper.student.zero_grad()
    wrapper.loss(inputs, samples)['loss_cwd'].backward()
    head = wrapper.student.bbox_head
    assert head.retina_cls.weight.grad.abs().sum() > 0
    assert head.retina_reg.weight.grad is None or \
        head.retina_reg.weight.grad.abs().sum() == 0
    assert all(p.grad is None for p in wrapper.teacher.parameters())


def test_logits_that_are_not_level_maps_are_named():
    with pytest.raises(TypeError, match='class score maps'):
        logits_of((torch.zeros(1, 3), ), 'bbox_head', 'student')
    assert len(logits_of(torch.zeros(1, 3), 'head', 'student')) == 1


def test_two_stage_logits_are_refused_with_the_way_out():
    cfg = load_config('mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py')
    cfg.model.backbone.update(depth=18, init_cfg=None)
    cfg.model.neck.in_channels = [64, 128, 256, 512]
    with DefaultScope.overwrite_default_scope('mmdet'):
        with pytest.raises(TypeError, match='distil named features'):
            DistillWrapper(
                cfg.model.to_dict(),
                distill_losses=[dict(type='CWDLoss', tau=1.0)],
                probe_shape=(3, SIZE, SIZE))
