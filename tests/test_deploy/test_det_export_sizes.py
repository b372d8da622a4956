"""Sizes read from shapes export as constants (NAS-FPN, Libra R-CNN)."""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmcpd.deploy.onnx_export import export_onnx
from mmcpd.deploy.static_sizes import (SIZED_FUNCTIONS, concrete_size,
                                       static_sizes)


def _run_onnx(path, x):
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})


def _export_matches(model, x, path):
    model.eval()
    with torch.no_grad():
        want = model(x)
    want = want if isinstance(want, (tuple, list)) else (want, )
    got = _run_onnx(export_onnx(model, x, str(path)), x)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-5, atol=1e-6)


class ShapeSized(nn.Module):
    """Sizes read from shapes after a resize to another tensor's size (the
    resize hides the shapes from ONNX shape inference)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.down = nn.Conv2d(4, 4, 3, stride=2, padding=1)

    def forward(self, x):
        big = self.conv(x)
        small = self.down(big)
        up = F.interpolate(small, size=big.shape[-2:], mode='nearest')
        # mmcv's MergingCell._resize: a kernel from two shapes
        kernel = (up.shape[-2] // small.shape[-2],
                  up.shape[-1] // small.shape[-1])
        pooled = F.max_pool2d(up, kernel_size=kernel, stride=kernel)
        # mmdet's BFP: an adaptive pool to another level's size
        gathered = F.adaptive_max_pool2d(up, output_size=small.size()[2:])
        averaged = F.adaptive_avg_pool2d(up, small.shape[-2:])
        padded = F.pad(up, (0, up.shape[-1] % 5, 0, 1))
        return pooled + gathered + averaged, padded


def test_sizes_from_shapes_export_and_match(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(1, 3, 12, 16)
    _export_matches(ShapeSized(), x, tmp_path / 'sized.onnx')


def test_mmcv_sum_cell_exports(tmp_path):
    """NAS-FPN's merge cells: upsample one input, max-pool the other to
    ``out_size`` by a kernel read from the shapes."""
    from mmcv.ops.merge_cells import GlobalPoolingCell, SumCell

    class Cells(nn.Module):

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.sum = SumCell(4, 4, upsample_mode='nearest')
            self.gp = GlobalPoolingCell(4, 4, upsample_mode='nearest')

        def forward(self, x):
            x = self.conv(x)
            a = F.max_pool2d(x, 2)
            b = F.interpolate(a, scale_factor=0.5, mode='nearest')
            mid = self.sum(x, b, out_size=a.shape[-2:])
            return self.gp(mid, x, out_size=b.shape[-2:])

    torch.manual_seed(1)
    _export_matches(Cells(), torch.randn(1, 3, 16, 16), tmp_path / 'c.onnx')


def test_mmdet_bfp_exports(tmp_path):
    """Libra R-CNN's balanced feature pyramid: gathered at the refine
    level's size by adaptive max pooling and nearest resizing."""
    from mmdet.models.necks import BFP

    class Pyramid(nn.Module):

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.bfp = BFP(4, 3, refine_level=1, refine_type='conv')

        def forward(self, x):
            x = self.conv(x)
            levels = [x, F.max_pool2d(x, 2), F.max_pool2d(x, 4)]
            return self.bfp(levels)

    torch.manual_seed(2)
    _export_matches(Pyramid(), torch.randn(1, 3, 16, 16), tmp_path / 'b.onnx')


def test_concrete_size():
    traced = torch.tensor(7)
    assert concrete_size(traced) == 7 and type(concrete_size(traced)) is int
    assert concrete_size((traced, 3)) == (7, 3)
    assert concrete_size([2, traced]) == [2, 7]
    assert concrete_size(torch.Size([4, 5])) == torch.Size([4, 5])
    scale = torch.tensor(0.5)
    assert concrete_size(scale) is scale  # a float is not a size
    assert concrete_size(None) is None


def test_static_sizes_restores_and_leaves_eager_alone():
    originals = {name: getattr(F, name) for name in SIZED_FUNCTIONS}
    x = torch.randn(1, 2, 8, 8)
    with static_sizes():
        for name in SIZED_FUNCTIONS:
            assert getattr(F, name) is not originals[name]
        with static_sizes():  # nested: not wrapped twice
            assert F.max_pool2d.__wrapped_static_sizes__ is originals[
                'max_pool2d']
        eager = F.max_pool2d(x, 2), F.interpolate(x, size=(3, 5))
    assert torch.equal(eager[0], originals['max_pool2d'](x, 2))
    assert eager[1].shape == (1, 2, 3, 5)
    for name in SIZED_FUNCTIONS:
        assert getattr(F, name) is originals[name]
