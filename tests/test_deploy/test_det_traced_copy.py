"""A tensor deep-copied in the forward exports (DDQ DETR's decoder)."""
import copy

import numpy as np
import torch
from torch import nn

from mmcpd.deploy.onnx_export import export_onnx
from mmcpd.deploy.traced_copy import traceable_deepcopy


class CopiesMask(nn.Module):
    """As DDQ's ``select_distinct_queries``: deep-copy a mask, write a
    slice of the copy, use it; the original stays as it was."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        scores = self.fc(x)  # (n, 4)
        mask = (scores > 0)[None].repeat(2, 1, 1)
        copied = copy.deepcopy(mask)
        copied[:, 1:3, 1:3] = scores[1:3, 1:3] < 0.5
        return (scores * copied[0] + scores * mask[1]).sum(0)


def test_deepcopied_mask_exports_and_matches(tmp_path):
    import onnxruntime as ort
    torch.manual_seed(0)
    model = CopiesMask().eval()
    x = torch.randn(5, 4)
    with torch.no_grad():
        want = model(x).numpy()
    path = export_onnx(model, x, str(tmp_path / 'copy.onnx'))
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_eager_deepcopy_unchanged():
    original = torch.Tensor.__deepcopy__
    x = torch.randn(3)
    param = nn.Parameter(torch.randn(2))
    with traceable_deepcopy():
        with traceable_deepcopy():  # nested: swapped once
            pass
        assert torch.Tensor.__deepcopy__ is not original
        copied, copied_param = copy.deepcopy((x, param))
    assert torch.Tensor.__deepcopy__ is original
    assert torch.equal(copied, x) and copied.data_ptr() != x.data_ptr()
    assert isinstance(copied_param, nn.Parameter)
