"""A convolution whose weight is computed from its parameter in the forward.

mmcv's ``ConvWS2d`` (weight standardisation, the ``gn+ws`` detectors)
standardises each output row of its weight over its input channels and
kernel before every conv. The computed weight still names the parameter's
rows (output channels) and columns (input channels), and the mean / std
over a row are channel-mixing sites, so such convs prune like plain ones:
masked == pruned == rebuilt, and the comb's FLOPs are mmengine's before and
after pruning.
"""
import torch
from mmcv.cnn.bricks.conv_ws import ConvWS2d
from torch import nn

from mmcpd.apis.pruning import comb_model

from .equivalence import assert_flops_match
from .test_structures import _check, _prunable


class WSBlock(nn.Module):
    """ConvWS + GroupNorm stem, a residual bottleneck of ConvWS layers and a
    plain conv head, as in a ``gn-ws`` ResNet."""

    def __init__(self):
        super().__init__()
        self.stem = ConvWS2d(3, 16, 3, padding=1)
        self.gn1 = nn.GroupNorm(4, 16)
        self.conv = ConvWS2d(16, 24, 3, padding=1)
        self.gn2 = nn.GroupNorm(4, 24)
        self.proj = ConvWS2d(24, 16, 1)
        self.head = nn.Conv2d(16, 5, 1)

    def forward(self, x):
        y = self.gn1(self.stem(x)).relu()
        z = self.proj(self.gn2(self.conv(y)).relu()) + y
        return self.head(z)


def test_weight_standardised_convs_prune(tmp_path):
    model = WSBlock()
    x = torch.randn(2, 3, 8, 8)
    result, pruned, _ = _check(model, x, tmp_path, ratio=0.4)
    stream, = _prunable(result, 'stem.weight')
    assert {'proj.weight', 'head.weight'} <= {
        m.name for m in stream.members}
    _prunable(result, 'conv.weight')
    assert not [g for g in result.groups
                if g.frozen and g.frozen != 'model output']
    assert pruned.conv.out_channels < 24 and pruned.stem.out_channels < 16


def test_weight_standardised_conv_flops():
    model = WSBlock().eval()
    x = torch.randn(1, 3, 8, 8)
    result = comb_model(model, x, forward_fn=lambda m, i: m(i))
    assert_flops_match(model, result, x, seeds=2)
