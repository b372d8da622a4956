"""Which models get data samples in tensor mode, and which metainfo: no
mmdet needed (zoo detectors: ``test_detectors.py``)."""
import pytest
import torch
from mmengine.model import BaseModel
from torch import nn

from mmcpd.comb.tensor_mode import (image_metainfo, is_mmdet_detector,
                                    tensor_forward, tensor_mode_samples)


class _Recorder(BaseModel):
    """Records what tensor mode is called with."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, inputs, data_samples=None, mode='tensor'):
        self.calls.append((data_samples, mode))
        return inputs


def _fake_class(name, module):
    return type(name, (_Recorder, ), {'__module__': module})


def test_detectors_are_found_by_class_names_without_importing_mmdet():
    base = _fake_class('BaseDetector', 'mmdet.models.detectors.base')
    yolo = type('YOLODetector', (base, ), {'__module__': 'mmyolo.models'})
    assert is_mmdet_detector(base())
    assert is_mmdet_detector(yolo())  # MMYOLO's detectors subclass mmdet's
    other = _fake_class('BaseDetector', 'somewhere_else')
    assert not is_mmdet_detector(other())
    assert not is_mmdet_detector(nn.Conv2d(3, 3, 1))


def test_metainfo_is_the_input_shape_unpadded_and_unscaled():
    metas = image_metainfo(torch.zeros(2, 3, 64, 96))
    assert len(metas) == 2
    for meta in metas:
        assert meta == dict(
            img_shape=(64, 96),
            ori_shape=(64, 96),
            pad_shape=(64, 96),
            batch_input_shape=(64, 96),
            scale_factor=(1.0, 1.0))
        assert all(type(v) is int for v in meta['img_shape'])


def test_metainfo_needs_a_batch_of_images():
    with pytest.raises(TypeError, match=r'\(N, C, H, W\)'):
        image_metainfo(torch.zeros(3, 64, 64))


def test_models_that_are_not_detectors_get_no_samples():
    model = _Recorder()
    x = torch.zeros(1, 3, 8, 8)
    assert tensor_mode_samples(model, x) is None
    assert tensor_forward(model, x) is x
    assert model.calls == [(None, 'tensor')]


def test_a_wrapper_of_a_detector_student_gets_its_samples(monkeypatch):
    """``DistillWrapper`` passes tensor mode's data samples to its
    student."""
    import mmcpd.comb.tensor_mode as tensor_mode
    monkeypatch.setattr(tensor_mode, 'det_data_samples',
                        lambda x: ['sample'] * x.shape[0])
    detector = _fake_class('BaseDetector', 'mmdet.models.detectors.base')()
    wrapper = _Recorder()
    wrapper.student = detector
    x = torch.zeros(2, 3, 8, 8)
    assert tensor_mode_samples(wrapper, x) == ['sample', 'sample']
    tensor_forward(wrapper, x)
    assert wrapper.calls == [(['sample', 'sample'], 'tensor')]
    wrapper.student = nn.Conv2d(3, 3, 1)  # a classifier's, say
    assert tensor_mode_samples(wrapper, x) is None
