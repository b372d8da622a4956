from collections import Counter

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from mmcpd.apis import init_model
from mmcpd.deploy import export_onnx, simplify_onnx, verify_onnx


def _ops(path):
    return Counter(n.op_type for n in onnx.load(path).graph.node)


def test_slimmed_graph_matches_torch(resnet18_cfg, pruned_checkpoint,
                                     tmp_path):
    model = init_model(resnet18_cfg, pruned_checkpoint)
    x = torch.randn(1, 3, 32, 32)
    path = export_onnx(model, x, str(tmp_path / 'm.onnx'))
    slim = simplify_onnx(path)
    assert slim.endswith('m.slim.onnx')
    verify_onnx(slim, model, x)
    # the exporter's Identity (shared weights) and Constant nodes go, every
    # op that computes stays
    before, after = _ops(path), _ops(slim)
    assert not after['Identity'] and not after['Constant']
    del before['Identity'], before['Constant']
    assert after == before
    meta = {p.key: p.value for p in onnx.load(slim).metadata_props}
    assert meta['mmcpd_exporter'] == 'legacy' and 'mmcpd_onnxslim' in meta


def _redundant_graph():
    """x -> Identity -> Conv -> BatchNorm -> + (c1 * c2) -> Identity -> Relu,
    and a Sigmoid of the Conv that nothing reads. Random, non-trivial
    weights and statistics."""
    rng = np.random.default_rng(0)
    arrays = dict(
        w=rng.standard_normal((4, 3, 3, 3)),
        b=rng.standard_normal(4),
        scale=rng.uniform(0.5, 1.5, 4),
        shift=rng.standard_normal(4),
        mean=rng.standard_normal(4),
        var=rng.uniform(0.5, 1.5, 4),
        c1=rng.standard_normal((1, 4, 1, 1)),
        c2=rng.standard_normal((1, 4, 1, 1)))
    nodes = [
        helper.make_node('Identity', ['x'], ['x_id'], name='id_in'),
        helper.make_node(
            'Conv', ['x_id', 'w', 'b'], ['conv'], name='conv', pads=[1] * 4),
        helper.make_node(
            'BatchNormalization', ['conv', 'scale', 'shift', 'mean', 'var'],
            ['bn'],
            name='bn'),
        helper.make_node('Mul', ['c1', 'c2'], ['cc'], name='constant_mul'),
        helper.make_node('Add', ['bn', 'cc'], ['added'], name='add'),
        helper.make_node('Identity', ['added'], ['added_id'], name='id_mid'),
        helper.make_node('Relu', ['added_id'], ['y'], name='relu'),
        helper.make_node('Sigmoid', ['conv'], ['unused'], name='dead'),
    ]
    graph = helper.make_graph(
        nodes, 'redundant',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 4, 8, 8])],
        [
            numpy_helper.from_array(a.astype(np.float32), name)
            for name, a in arrays.items()
        ])
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid('', 17)])


def _run(path, x):
    import onnxruntime as ort
    options = ort.SessionOptions()
    # the unoptimised graph, as written
    options.graph_optimization_level = ort.GraphOptimizationLevel.\
        ORT_DISABLE_ALL
    session = ort.InferenceSession(
        path, options, providers=['CPUExecutionProvider'])
    return session.run(['y'], {'x': x})[0]


def test_simplify_removes_what_it_can(tmp_path):
    path = str(tmp_path / 'redundant.onnx')
    onnx.save(_redundant_graph(), path)
    slim = simplify_onnx(path, str(tmp_path / 'slim.onnx'))
    # identities and the dead branch go, the constant product is folded,
    # BatchNorm (and the constant sum) fold into the convolution
    assert _ops(slim) == Counter(Conv=1, Relu=1)
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(
        np.float32)
    np.testing.assert_allclose(
        _run(slim, x), _run(path, x), rtol=1e-5, atol=1e-5)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='nothing.onnx'):
        simplify_onnx(str(tmp_path / 'nothing.onnx'))
