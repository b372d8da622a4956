"""A DistillWrapper term's weight schedule, at the runner's iteration."""
import pytest
import torch
from mmengine.hub import get_config
from mmengine.logging import MessageHub
from mmpretrain.structures import DataSample

from mmcpd.models.distill_wrapper import DistillWrapper
# one OpenMP thread per test, as in the wrapper's tests
from tests.test_models.test_distill_wrapper import _one_thread  # noqa: F401


def _cls_cfg():
    cfg = get_config('mmpretrain::_base_/models/resnet18.py').model
    cfg.type = 'mmpretrain.ImageClassifier'
    cfg.backbone.update(base_channels=8)
    cfg.head.update(num_classes=10, in_channels=64, topk=(1, ))
    return cfg.to_dict()


def _batch(n=4, size=32):
    g = torch.Generator().manual_seed(0)
    inputs = torch.randn(n, 3, size, size, generator=g)
    samples = [DataSample().set_gt_label(i % 10) for i in range(n)]
    return inputs, samples


def _losses(model, iteration):
    MessageHub.get_current_instance().update_info('iter', iteration)
    inputs, samples = _batch()
    torch.manual_seed(0)
    return model.loss(inputs, samples)


def test_schedule_scales_the_term_and_skips_the_teacher_at_zero():
    # student and teacher: two differently initialised ResNets, given as
    # modules (no copy of the student at the first step)
    torch.manual_seed(1)
    student = DistillWrapper(_cls_cfg()).student
    teacher = DistillWrapper(_cls_cfg()).student
    kd = dict(type='KDLoss', tau=2.0, loss_weight=1.0)
    plain = DistillWrapper(student, teacher=teacher, distill_losses=[kd])
    ramped = DistillWrapper(
        student,
        teacher=teacher,
        distill_losses=[dict(kd, weight_schedule=dict(end=8,
                                                      ramp='linear'))])
    calls = []
    teacher.register_forward_hook(lambda *args: calls.append(1))
    for model in (plain, ramped):
        model.train()
    for iteration, factor in ((0, 1.0), (2, 0.75), (6, 0.25)):
        want = _losses(plain, iteration)
        got = _losses(ramped, iteration)
        assert float(want['loss_kd']) > 0
        assert float(got['loss_kd']) == pytest.approx(
            factor * float(want['loss_kd']), rel=1e-5)
        assert torch.allclose(got['loss_task'], want['loss_task'])
    calls.clear()
    got = _losses(ramped, 8)
    # from `end` on: the task loss alone, the term logged as 0, and the
    # teacher's forward saved
    assert not calls
    assert float(got['loss_kd']) == 0.0
    assert torch.allclose(got['loss_task'], _losses(plain, 8)['loss_task'])
    total, _ = ramped.parse_losses(got)
    total.backward()
    assert all(p.grad is not None for p in student.head.parameters())
