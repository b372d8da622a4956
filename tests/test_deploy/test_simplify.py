import onnx
import pytest
import torch

from mmcpd.apis import init_model
from mmcpd.deploy import export_onnx, simplify_onnx, verify_onnx


def test_slimmed_graph_matches_torch(resnet18_cfg, pruned_checkpoint,
                                     tmp_path):
    model = init_model(resnet18_cfg, pruned_checkpoint)
    x = torch.randn(1, 3, 32, 32)
    path = export_onnx(model, x, str(tmp_path / 'm.onnx'))
    slim = simplify_onnx(path)
    assert slim.endswith('m.slim.onnx')
    verify_onnx(slim, model, x)
    before, after = onnx.load(path), onnx.load(slim)
    assert len(after.graph.node) <= len(before.graph.node)
    meta = {p.key: p.value for p in after.metadata_props}
    assert meta['mmcpd_exporter'] == 'legacy' and 'mmcpd_onnxslim' in meta


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='nothing.onnx'):
        simplify_onnx(str(tmp_path / 'nothing.onnx'))
