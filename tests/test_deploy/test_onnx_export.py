import copy

import onnx
import pytest
import torch
from mmengine.config import Config
from torch import nn

from mmcpd.apis import init_model, resolve_config_path
from mmcpd.deploy import ONNXMismatchError, export_onnx, verify_onnx
from tests.test_apis.conftest import KEEP

SEGFORMER = 'mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py'


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _conv_widths(path):
    model = onnx.load(path)
    inits = {i.name: list(i.dims) for i in model.graph.initializer}
    return [
        inits[n.input[1]] for n in model.graph.node
        if n.op_type == 'Conv' and n.input[1] in inits
    ]


def test_classifier_exports_logits(resnet18_cfg, plain_checkpoint, tmp_path):
    model = init_model(resnet18_cfg, plain_checkpoint)
    x = _x(1, 3, 32, 32)
    path = export_onnx(model, x, str(tmp_path / 'r18.onnx'), opset=17)
    proto = onnx.load(path)
    assert proto.opset_import[0].version == 17
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta['mmcpd_exporter'] == 'legacy'
    assert meta['mmcpd_opset'] == '17'
    report = verify_onnx(path, model, x)
    assert list(report) == ['output']
    assert report['output']['max_abs'] < 1e-4
    # The output is the head's logits (10 classes), not features.
    out = proto.graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in out] == [1, 10]


def test_wrong_weights_are_caught(resnet18_cfg, plain_checkpoint, tmp_path):
    model = init_model(resnet18_cfg, plain_checkpoint)
    x = _x(2, 3, 32, 32)
    path = export_onnx(model, x, str(tmp_path / 'r18.onnx'))
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.head.fc.bias.add_(0.5)
    with pytest.raises(ONNXMismatchError) as info:
        verify_onnx(path, other, x)
    message = str(info.value)
    assert 'max abs diff 0.5' in message
    assert 'max rel diff' in message
    assert '20 of 20 elements' in message


def test_dynamic_batch(resnet18_cfg, tmp_path):
    model = init_model(resnet18_cfg)
    static = export_onnx(model, _x(1, 3, 32, 32), str(tmp_path / 's.onnx'))
    dynamic = export_onnx(
        model, _x(1, 3, 32, 32), str(tmp_path / 'd.onnx'), dynamic_batch=True)
    x3 = _x(3, 3, 32, 32, seed=2)
    assert verify_onnx(dynamic, model, x3)['output']['max_abs'] < 1e-4
    with pytest.raises(ValueError, match=r'input shape \[3, 3, 32, 32\]'):
        verify_onnx(static, model, x3)


def test_segmentor_exports_logits(tmp_path):
    cfg = Config.fromfile(resolve_config_path(SEGFORMER))
    cfg.model.decode_head.num_classes = 5
    model = init_model(cfg)  # SyncBN in the head is reverted to BN
    x = _x(1, 3, 64, 64)
    path = export_onnx(model, x, str(tmp_path / 'seg.onnx'))
    report = verify_onnx(path, model, x)
    dims = onnx.load(path).graph.output[0].type.tensor_type.shape.dim
    # SegFormer's head predicts at 1/4 of the input size.
    assert [d.dim_value for d in dims] == [1, 5, 16, 16]
    assert report['output']['max_abs'] < 1e-3
    resized = export_onnx(
        model, x, str(tmp_path / 'seg_full.onnx'), resize_to_input=True)
    verify_onnx(resized, model, x, resize_to_input=True)
    dims = onnx.load(resized).graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [1, 5, 64, 64]


def test_pruned_checkpoint_exports_pruned_widths(resnet18_cfg, resnet18_pair,
                                                 pruned_checkpoint, tmp_path):
    original, _, _ = resnet18_pair
    model = init_model(resnet18_cfg, pruned_checkpoint)
    x = _x(2, 3, 32, 32)
    path = export_onnx(model, x, str(tmp_path / 'pruned.onnx'))
    verify_onnx(path, model, x)
    # ... and it computes what the unpruned original did.
    verify_onnx(path, original, x)
    widths = _conv_widths(path)
    n = len(KEEP)
    assert [n, 64, 3, 3] in widths and [64, n, 3, 3] in widths


def test_distill_checkpoint_exports_student(distill_cfg, distill_checkpoint,
                                            resnet18_pair, tmp_path):
    original, _, _ = resnet18_pair
    model = init_model(distill_cfg, distill_checkpoint)
    x = _x(1, 3, 32, 32)
    path = export_onnx(model, x, str(tmp_path / 'student.onnx'))
    verify_onnx(path, original, x)
    assert [len(KEEP), 64, 3, 3] in _conv_widths(path)


def test_plain_module_and_bad_arguments(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    x = _x(1, 3, 8, 8)
    path = export_onnx(model, x, str(tmp_path / 'plain.onnx'))
    assert verify_onnx(path, model, x)['output']['max_abs'] < 1e-5
    with pytest.raises(ValueError, match="`exporter` should be one of"):
        export_onnx(model, x, str(tmp_path / 'a.onnx'), exporter='tracing')
    with pytest.raises(ValueError, match=r'`opset` should be in \[7, 20\]'):
        export_onnx(model, x, str(tmp_path / 'a.onnx'), opset=23)
    with pytest.raises(ValueError, match='`atol` should be >= 0'):
        verify_onnx(path, model, x, atol=-1)
