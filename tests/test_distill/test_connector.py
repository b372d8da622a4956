import pytest
import torch
from torch import nn

from mmcpd.distill import Connector, build_connector


def test_no_connector_when_widths_agree():
    assert build_connector((2, 64, 8, 8), (2, 64, 4, 4)) is None
    assert build_connector((2, 197, 192), (2, 197, 192)) is None


@pytest.mark.parametrize('s_shape, t_shape, kind', [
    ((2, 32, 8, 8), (2, 64, 8, 8), nn.Conv2d),
    ((2, 10, 96), (2, 10, 192), nn.Linear),
    ((2, 48), (2, 512), nn.Linear),
])
def test_connector_maps_student_to_teacher_width(s_shape, t_shape, kind):
    connector = build_connector(s_shape, t_shape)
    assert isinstance(connector.proj, kind)
    out = connector(torch.randn(*s_shape))
    assert out.shape == torch.Size(t_shape)
    out.sum().backward()
    assert connector.proj.weight.grad is not None


def test_connector_is_a_1x1_conv_for_maps():
    connector = build_connector((1, 3, 5, 5), (1, 6, 5, 5))
    assert connector.proj.kernel_size == (1, 1)


def test_connector_names_the_width_it_expects():
    connector = Connector(32, 64, 4)
    with pytest.raises(
            ValueError,
            match='with 32 channels, but got shape '
            r'\(1, 16, 4, 4\)'):
        connector(torch.randn(1, 16, 4, 4))


def test_build_connector_rejects_mismatched_ranks():
    with pytest.raises(ValueError, match='same number of dimensions'):
        build_connector((2, 32, 8, 8), (2, 64, 8))
    with pytest.raises(ValueError, match='2, 3 or 4 dimensions, but got 5'):
        build_connector((1, 2, 3, 4, 5), (1, 2, 3, 4, 6))
