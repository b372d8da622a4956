"""Per-node onnxruntime profiles of ResNet-18 and a hand-pruned copy."""
import pytest
import torch

from mmcpd.deploy import export_onnx
from mmcpd.deploy.profile import (by_op_type, compare_profiles,
                                  profile_nodes, split_time)
from tests.test_apis.conftest import KEEP


@pytest.fixture(scope='module')
def profiles(resnet18_pair, tmp_path_factory):
    original, pruned, _ = resnet18_pair
    folder = tmp_path_factory.mktemp('profile')
    x = torch.randn(1, 3, 32, 32)
    return [
        profile_nodes(
            export_onnx(model, x, str(folder / f'{name}.onnx')),
            warmup=2,
            runs=5,
            threads=1)
        for name, model in (('base', original), ('pruned', pruned))
    ]


def test_macs_of_the_nodes_follow_the_pruned_channels(profiles):
    base, pruned = profiles
    # layer1.0 runs at 8x8 for a 32x32 input; conv1 lost output channels
    # and conv2 the same input channels (3x3 kernels, 64 channels around)
    gone = 64 - len(KEEP)
    expected = 2 * gone * 64 * 9 * 8 * 8
    total = [sum(n.macs for n in p.values()) for p in profiles]
    assert total[0] - total[1] == expected
    # the classifier's Gemm: 512 features to 10 classes
    assert any(n.macs == 512 * 10 for n in base.values())
    for nodes in profiles:
        split = split_time(nodes)
        assert split['products'] > 0 and split['other'] >= 0
        assert sum(by_op_type(nodes).values()) == pytest.approx(
            sum(n.ms for n in nodes.values()))
        assert all(n.ms >= 0 for n in nodes.values())
    assert len(base) == len(pruned)


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
