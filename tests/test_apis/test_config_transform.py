"""wrap_for_distill and CPDRunner: a CPD base config wraps any model."""
import pytest
from mmengine.config import Config
from mmengine.registry import RUNNERS

from mmcpd.apis.config_transform import CPDRunner, wrap_for_distill

KD = [dict(type='KDLoss', tau=2.0)]


def _cfg(**extra) -> Config:
    return Config(
        dict(
            model=dict(type='ImageClassifier', backbone=dict(type='X')),
            data_preprocessor=dict(num_classes=10, mean=[1.0], std=[2.0]),
            **extra))


def test_wraps_the_inherited_model():
    cfg = wrap_for_distill(_cfg(distill=dict(distill_losses=KD)))
    assert cfg.model.type == 'DistillWrapper'
    assert cfg.model.student.type == 'ImageClassifier'
    assert cfg.model.distill_losses == KD
    # the runner must not hand MMPretrain's top-level pre-processor (no
    # `type`) to the wrapper: it moves into the student
    assert cfg.data_preprocessor is None
    assert cfg.model.student.data_preprocessor.num_classes == 10


def test_no_distill_or_already_wrapped_is_unchanged():
    cfg = wrap_for_distill(_cfg())
    assert cfg.model.type == 'ImageClassifier'
    assert cfg.data_preprocessor.num_classes == 10
    cfg = _cfg(distill=dict(distill_losses=KD))
    cfg.model = dict(type='DistillWrapper', student=dict(type='A'))
    assert wrap_for_distill(cfg).model.student.type == 'A'


def test_bad_distill_fields_name_the_culprit():
    with pytest.raises(KeyError, match='teacher_ckpt'):
        wrap_for_distill(_cfg(distill=dict(teacher_ckpt='x.pth')))
    with pytest.raises(TypeError, match='`distill` should be a dict'):
        wrap_for_distill(_cfg(distill=['KDLoss']))


def test_runner_resolves_by_import_path_without_custom_imports():
    # what the CPD base configs write as `runner_type`
    path = 'mmcpd.apis.config_transform.CPDRunner'
    assert RUNNERS.get(path) is CPDRunner
    assert RUNNERS.get('CPDRunner') is CPDRunner
