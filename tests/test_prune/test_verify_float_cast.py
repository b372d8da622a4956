"""Verification runs in float64 even where a head casts its output with
``.float()`` (mmdet's FCOS and ATSS heads), so that the round-off of a
deep random model in float32 does not fail valid cuts."""
import torch
from torch import nn

from mmcpd.prune.surgery.verify import float_keeps_float64, in_float64


class CastHead(nn.Module):

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return self.conv(x).float()


def test_float_cast_keeps_float64():
    model = CastHead()
    found = in_float64(model, torch.randn(1, 3, 4, 4), lambda m, i: m(i))
    assert found is not None
    double, x = found
    with float_keeps_float64():
        assert double(x).dtype == torch.float64
        # other casts still cast
        assert torch.ones(2, dtype=torch.float16).float().dtype == \
            torch.float32
    assert double(x).dtype == torch.float32  # restored
