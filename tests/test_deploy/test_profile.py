"""Per-node onnxruntime profiles of ResNet-18 and a hand-pruned copy.

onnxruntime optimises the graph for the CPU it runs on: its NCHWc layout
transform pads convolution channels to the vector width (8 floats with
AVX2, 16 with AVX-512) and renames the nodes. Node names, node counts and
times therefore depend on the CPU; the MACs of the profiled nodes are those
of the exported graph and must not, which is what these tests check (with
widths that are padded under both instruction sets).
"""
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from mmcpd.deploy import export_onnx, onnx_complexity
from mmcpd.deploy.complexity import onnx_node_macs
from mmcpd.deploy.profile import (attribute_macs, by_op_type,
                                  compare_profiles, profile_nodes,
                                  split_time)
from tests.test_apis.conftest import KEEP


@pytest.fixture(scope='module')
def exported(resnet18_pair, tmp_path_factory):
    original, pruned, _ = resnet18_pair
    folder = tmp_path_factory.mktemp('profile')
    x = torch.randn(1, 3, 32, 32)
    return [
        export_onnx(model, x, str(folder / f'{name}.onnx'))
        for name, model in (('base', original), ('pruned', pruned))
    ]


@pytest.fixture(scope='module')
def profiles(exported):
    return [
        profile_nodes(path, warmup=2, runs=5, threads=1) for path in exported
    ]


def test_macs_of_the_nodes_follow_the_pruned_channels(exported, profiles):
    base, pruned = profiles
    # layer1.0 runs at 8x8 for a 32x32 input; conv1 lost output channels
    # and conv2 the same input channels (3x3 kernels, 64 channels around)
    gone = 64 - len(KEEP)
    expected = 2 * gone * 64 * 9 * 8 * 8
    total = [sum(n.macs for n in p.values()) for p in profiles]
    assert total[0] - total[1] == expected
    for path, nodes, macs in zip(exported, profiles, total):
        # every product of the exported graph is counted once, as exported
        assert macs == onnx_complexity(path)['flops']
        _, graph_macs = onnx_node_macs(path)
        assert sorted(n.macs for n in nodes.values() if n.macs) == sorted(
            graph_macs.values())
    # the classifier's Gemm: 512 features to 10 classes
    assert any(n.macs == 512 * 10 for n in base.values())
    for nodes in profiles:
        split = split_time(nodes)
        products = sum(n.ms for n in nodes.values()
                       if 'Conv' in n.op or 'Gemm' in n.op)
        assert split['products'] == pytest.approx(products)
        assert split['products'] + split['other'] == pytest.approx(
            sum(n.ms for n in nodes.values()))
        assert sum(by_op_type(nodes).values()) == pytest.approx(
            sum(n.ms for n in nodes.values()))
        assert all(n.ms >= 0 for n in nodes.values())
    # CPU-dependent: which nodes there are; the same for both models
    assert len(base) == len(pruned)


def test_macs_are_the_exported_graphs_for_padded_widths(tmp_path):
    """20 and 12 channels are no multiple of 8 (AVX2) nor 16 (AVX-512):
    the NCHWc kernels run padded channels, the MACs count the real ones."""
    model = nn.Sequential(
        nn.Conv2d(3, 20, 3, padding=1), nn.ReLU(),
        nn.Conv2d(20, 12, 3, padding=1), nn.ReLU(), nn.Conv2d(12, 20, 1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(20, 10)).eval()
    path = export_onnx(model, torch.randn(1, 3, 16, 16),
                       str(tmp_path / 'odd.onnx'))
    nodes = profile_nodes(path, warmup=1, runs=2, threads=1)
    by_hand = [
        16 * 16 * 20 * 3 * 9, 16 * 16 * 12 * 20 * 9, 16 * 16 * 20 * 12, 20 * 10
    ]
    assert sorted(n.macs for n in nodes.values() if n.macs) == sorted(by_hand)
    assert sum(n.macs for n in nodes.values()) == sum(by_hand)


def _graph():
    """conv1 -> relu -> conv2 -> add(conv1 out) -> relu -> matmul."""

    def weight(name, *shape):
        return helper.make_tensor(name, TensorProto.FLOAT, shape,
                                  [0.0] * int(torch.tensor(shape).prod()))

    nodes = [
        helper.make_node('Conv', ['x', 'w1'], ['c1'], name='/conv1/Conv'),
        helper.make_node('Relu', ['c1'], ['r1'], name='/relu/Relu'),
        helper.make_node(
            'Conv', ['r1', 'w2'], ['c2'], name='/conv2/Conv', pads=[1] * 4),
        helper.make_node('Add', ['c2', 'r1'], ['a'], name='/Add'),
        helper.make_node('Relu', ['a'], ['r2'], name='/relu_1/Relu'),
        helper.make_node('Flatten', ['r2'], ['f'], name='/Flatten'),
        helper.make_node('MatMul', ['f', 'w3'], ['y'], name='/fc/MatMul'),
    ]
    graph = helper.make_graph(
        nodes, 'g',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 5])],
        [
            weight('w1', 20, 3, 1, 1),
            weight('w2', 20, 20, 3, 3),
            weight('w3', 320, 5)
        ])
    return helper.make_model(graph)


def test_profiled_names_map_to_the_exported_nodes(tmp_path):
    """The names onnxruntime gives on any CPU (block size aside): a Conv
    fused with its ReLU is named after the ReLU's output, a Conv fused with
    the sum after its own, a MatMul + Add fusion after the MatMul."""
    path = str(tmp_path / 'g.onnx')
    onnx.save(_graph(), path)
    graph, macs = onnx_node_macs(path)
    assert macs == {
        '/conv1/Conv': 16 * 20 * 3,
        '/conv2/Conv': 16 * 20 * 20 * 9,
        '/fc/MatMul': 320 * 5
    }
    profiled = [('ReorderInput', 'ReorderInput'),
                ('/relu/Relu_output_0_nchwc', 'Conv'),
                ('/conv2/Conv_output_0_nchwc', 'Conv'),
                ('ReorderOutput', 'ReorderOutput'), ('/Flatten', 'Flatten'),
                ('/fc/MatMul/MatMulAddFusion', 'Gemm')]
    # the exported tensors are named like torch's: '<node>_output_0'
    renamed = {t: f'{n.name}_output_0' for n in graph.node for t in n.output}
    for node in graph.node:
        node.input[:] = [renamed.get(t, t) for t in node.input]
        node.output[:] = [renamed[t] for t in node.output]
    assert attribute_macs(profiled, graph, macs) == {
        'ReorderInput': 0,
        '/relu/Relu_output_0_nchwc': macs['/conv1/Conv'],
        '/conv2/Conv_output_0_nchwc': macs['/conv2/Conv'],
        'ReorderOutput': 0,
        '/Flatten': 0,
        '/fc/MatMul/MatMulAddFusion': macs['/fc/MatMul'],
    }
    # unoptimised (or unfused) nodes keep their names
    plain = [(n.name, n.op_type) for n in graph.node]
    assert attribute_macs(plain, graph, macs) == {
        name: macs.get(name, 0)
        for name, _ in plain
    }


def test_compare_pairs_nodes_by_name(profiles):
    base, pruned = profiles
    rows = compare_profiles(base, pruned)
    assert {r['node'] for r in rows} == set(base)
    assert [r['base_ms'] for r in rows] == sorted(
        (r['base_ms'] for r in rows), reverse=True)
    shrunk = [r for r in rows if r['flops_speedup'] and
              r['flops_speedup'] > 1]
    # exactly the two convolutions of layer1.0 lost work
    assert len(shrunk) == 2
    assert all('layer1.0' in r['node'] for r in shrunk)
