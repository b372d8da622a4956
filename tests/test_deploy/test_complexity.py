import pytest
import torch
from torch import nn

from mmcpd.deploy import export_onnx, model_complexity, onnx_complexity


def _net():
    # conv 3->8, 3x3, pad 1 on 8x8: 8*8 * 8 * 3*9 = 13824 MACs
    # depthwise conv 8 groups 3x3: 8*8 * 8 * 1*9 = 4608 MACs
    # linear 8->5 after pooling: 40 MACs
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)).eval()


EXPECTED_MACS = 13824 + 4608 + 40
EXPECTED_PARAMS = 3 * 8 * 9 + 8 * 9 + 8 * 5 + 5


def test_model_complexity_counts_multiply_adds():
    info = model_complexity(_net(), torch.randn(1, 3, 8, 8))
    assert info['params'] == EXPECTED_PARAMS
    # mmengine also counts the pooling: one add per input element.
    assert info['flops'] == EXPECTED_MACS + 8 * 8 * 8


def test_onnx_complexity_matches_hand_count(tmp_path):
    path = export_onnx(
        _net(),
        torch.randn(1, 3, 8, 8),
        str(tmp_path / 'net.onnx'),
        dynamic_batch=True)
    info = onnx_complexity(path, shape=(1, 3, 8, 8))
    assert info['params'] == EXPECTED_PARAMS
    assert info['flops'] == EXPECTED_MACS
    # The batch scales FLOPs, not params.
    assert onnx_complexity(path, shape=(3, 3, 8, 8))['flops'] == \
        3 * EXPECTED_MACS
    with pytest.raises(ValueError, match='`shape` should have 4 dims'):
        onnx_complexity(path, shape=(3, 8, 8))


class _Attention(nn.Module):
    """Fused attention over 6 tokens of width 4: QK^T and attention x V."""

    def forward(self, x):
        q = k = v = x.view(1, 2, 6, 4)  # 2 heads
        return nn.functional.scaled_dot_product_attention(q, k, v)


def test_model_complexity_counts_what_mmengine_misses():
    """Convolutions with ``padding='same'`` (``aten::_convolution_mode``)
    and fused attention, which mmengine's counter has no handle for."""
    same = nn.Conv2d(3, 8, 3, padding='same', bias=False).eval()
    assert model_complexity(same, torch.randn(1, 3, 8, 8))['flops'] == \
        8 * 8 * 8 * 3 * 9
    # per head: QK^T 6 * 6 * 4 and attention x V 6 * 6 * 4
    assert model_complexity(_Attention(), torch.randn(1, 2, 6, 4))[
        'flops'] == 2 * (6 * 6 * 4 + 6 * 6 * 4)
