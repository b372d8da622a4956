"""mmcv's CornerPool exports without cummax (CornerNet, CentripetalNet)."""
import numpy as np
import pytest
import torch
from torch import nn

from mmcpd.deploy.corner_pool import mmcv_corner_pool_exportable, running_max


@pytest.mark.parametrize('size', [1, 2, 5, 8, 13])
def test_running_max_is_cummax(size):
    torch.manual_seed(size)
    x = torch.randn(2, 3, size, size + 3)
    for dim in (2, 3):
        assert torch.equal(running_max(x, dim), torch.cummax(x, dim).values)


def test_corner_pools_export_and_match_torch(tmp_path):
    import onnxruntime as ort
    from mmcv.ops import CornerPool

    from mmcpd.deploy.onnx_export import export_onnx

    class Pools(nn.Module):

        def __init__(self):
            super().__init__()
            self.pools = nn.ModuleList(
                CornerPool(mode) for mode in ('top', 'bottom', 'left',
                                              'right'))

        def forward(self, x):
            return tuple(pool(x) for pool in self.pools)

    torch.manual_seed(0)
    model = Pools().eval()
    x = torch.randn(1, 4, 7, 9)
    want = model(x)
    path = export_onnx(model, x, str(tmp_path / 'pools.onnx'))
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w.numpy())
    # mmcv's forward is back after the export
    with mmcv_corner_pool_exportable():
        assert CornerPool.forward.__module__ == 'mmcpd.deploy.corner_pool'
    assert CornerPool.forward.__module__.startswith('mmcv')
