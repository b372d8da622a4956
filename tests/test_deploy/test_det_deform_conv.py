"""mmcv's deformable convolutions (DCN, DCNv2) in plain PyTorch ops:
element-wise what mmcv's CPU kernel computes, and exported to standard ONNX
ops that onnxruntime runs."""
import onnx
import pytest
import torch
from mmcv.ops import (DeformConv2d, DeformConv2dPack, ModulatedDeformConv2d,
                      ModulatedDeformConv2dPack)
from mmcv.ops import deform_conv as mmcv_deform_conv
from mmcv.ops import modulated_deform_conv as mmcv_modulated

from mmcpd.deploy import export_onnx, verify_onnx
from mmcpd.deploy.deform_conv import (deform_conv2d,
                                      mmcv_deform_conv_exportable,
                                      modulated_deform_conv2d)

# (stride, padding, dilation, groups)
GEOMETRIES = [(1, 1, 1, 1), (2, 1, 1, 2), (1, 2, 2, 1),
              ((2, 1), (1, 2), (1, 2), 2)]


class _Offsets(torch.nn.Module):
    """mmcv's DCN (or DCNv2) on offsets (and masks) held as buffers: large
    enough to sample off the map, fractional, some whole pixels."""

    def __init__(self,
                 modulated: bool,
                 deform_groups: int,
                 stride,
                 padding,
                 dilation,
                 groups,
                 seed: int = 0):
        super().__init__()
        kind = ModulatedDeformConv2d if modulated else DeformConv2d
        self.conv = kind(8,
                         6,
                         3,
                         stride=stride,
                         padding=padding,
                         dilation=dilation,
                         groups=groups,
                         deform_groups=deform_groups,
                         bias=modulated)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.conv.weight.copy_(
                torch.randn(self.conv.weight.shape, generator=gen))
            if modulated:
                self.conv.bias.copy_(torch.randn(6, generator=gen))
        out_h, out_w = _out_size((9, 11), stride, padding, dilation)
        offset = torch.randn(
            1, deform_groups * 18, out_h, out_w, generator=gen) * 4
        offset[:, ::5] = offset[:, ::5].round()
        self.register_buffer('offset', offset)
        self.register_buffer(
            'mask',
            torch.rand(1, deform_groups * 9, out_h, out_w, generator=gen))
        self.modulated = modulated

    def forward(self, x):
        offset = self.offset.repeat(x.shape[0], 1, 1, 1)
        if self.modulated:
            mask = self.mask.repeat(x.shape[0], 1, 1, 1)
            return self.conv(x, offset, mask)
        return self.conv(x, offset)


def _out_size(size, stride, padding, dilation):
    pairs = [
        v if isinstance(v, tuple) else (v, v)
        for v in (stride, padding, dilation)
    ]
    return tuple((n + 2 * p - 2 * d - 1) // s + 1
                 for n, (s, p, d) in zip(size, zip(*pairs)))


def _features(batch=2):
    gen = torch.Generator().manual_seed(1)
    return torch.randn(batch, 8, 9, 11, generator=gen)


@pytest.mark.parametrize('modulated', [False, True], ids=['dcn', 'dcnv2'])
@pytest.mark.parametrize('deform_groups', [1, 2])
@pytest.mark.parametrize('geometry', GEOMETRIES)
def test_matches_mmcv_cpu_kernel(modulated, deform_groups, geometry):
    model = _Offsets(modulated, deform_groups, *geometry).eval()
    x = _features()
    with torch.no_grad():
        expected = model(x)
        with mmcv_deform_conv_exportable(17):
            ours = model(x)
    # samples off the map are zero in both
    assert expected.shape == ours.shape
    assert (ours - expected).abs().max() <= 1e-4
    # the functions themselves, with mmcv's argument order
    stride, padding, dilation, groups = geometry
    conv = model.conv
    args = (stride, padding, dilation, groups, deform_groups)
    offset = model.offset.repeat(2, 1, 1, 1)
    with torch.no_grad():
        if modulated:
            mask = model.mask.repeat(2, 1, 1, 1)
            ours = modulated_deform_conv2d(x, offset, mask, conv.weight,
                                           conv.bias, *args)
        else:
            ours = deform_conv2d(x, offset, conv.weight, *args)
    assert (ours - expected).abs().max() <= 1e-4


@pytest.mark.parametrize('modulated', [False, True], ids=['dcn', 'dcnv2'])
@pytest.mark.parametrize('deform_groups', [1, 2])
def test_exports_to_standard_onnx(modulated, deform_groups, tmp_path):
    # stride 2, dilation 2, through the Pack modules (offsets from a conv)
    kind = ModulatedDeformConv2dPack if modulated else DeformConv2dPack
    model = kind(8,
                 6,
                 3,
                 stride=2,
                 padding=2,
                 dilation=2,
                 deform_groups=deform_groups).eval()
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        # offsets of several pixels, so that some samples fall off the map
        model.conv_offset.weight.copy_(
            torch.randn(model.conv_offset.weight.shape, generator=gen))
    x = _features()
    path = export_onnx(model, x, tmp_path / 'dcn.onnx', opset=17)
    ops = {n.op_type for n in onnx.load(path).graph.node}
    domains = {n.domain for n in onnx.load(path).graph.node}
    assert 'GridSample' in ops and domains <= {''}
    # onnxruntime against mmcv's CPU kernel (torch, outside the export)
    verify_onnx(path, model, x, rtol=1e-4, atol=1e-4)


def test_mmcvs_own_functions_are_back_after_export():
    own = (mmcv_deform_conv.deform_conv2d,
           mmcv_modulated.modulated_deform_conv2d)
    with mmcv_deform_conv_exportable(17):
        assert mmcv_deform_conv.deform_conv2d is deform_conv2d
        assert (mmcv_modulated.modulated_deform_conv2d
                is modulated_deform_conv2d)
    assert (mmcv_deform_conv.deform_conv2d,
            mmcv_modulated.modulated_deform_conv2d) == own


def test_refuses_opset_without_grid_sample():
    model = _Offsets(False, 1, 1, 1, 1, 1).eval()
    with mmcv_deform_conv_exportable(15), pytest.raises(ValueError,
                                                        match='opset >= 16'):
        model(_features())


class _LevelAbove(torch.nn.Module):
    """DyHead's DyDCNv2 on the level above: offsets and masks are channel
    slices of one conv's output on a map twice as high and wide as the
    output; mmcv reads the first values of each sample in memory order."""

    def __init__(self, stride: int):
        super().__init__()
        self.offset_and_mask = torch.nn.Conv2d(8, 27, 3, padding=1)
        self.conv = ModulatedDeformConv2d(8, 6, 3, stride=stride, padding=1)
        gen = torch.Generator().manual_seed(3)
        with torch.no_grad():
            for param in self.parameters():
                param.copy_(torch.randn(param.shape, generator=gen))

    def forward(self, x):
        # offsets from the map of twice the size, as DyHead's high level
        big = torch.nn.functional.interpolate(x, scale_factor=2.0)
        offset_and_mask = self.offset_and_mask(big)
        offset = offset_and_mask[:, :18]
        mask = offset_and_mask[:, 18:].sigmoid()
        return self.conv(x, offset, mask)


@pytest.mark.parametrize('stride', [1, 2])
def test_offsets_of_a_larger_map_read_as_mmcv_does(stride, tmp_path):
    model = _LevelAbove(stride).eval()
    x = _features()
    with torch.no_grad():
        expected = model(x)
        with mmcv_deform_conv_exportable(17):
            ours = model(x)
    assert expected.shape == ours.shape == (2, 6) + _out_size(
        (9, 11), stride, 1, 1)
    assert (ours - expected).abs().max() <= 1e-4
    path = export_onnx(model, x, tmp_path / 'dyhead.onnx', opset=17)
    verify_onnx(path, model, x, rtol=1e-4, atol=1e-4)


def test_refuses_offsets_it_cannot_read():
    conv = ModulatedDeformConv2d(8, 6, 3, padding=1)
    x = _features()
    mask = torch.rand(2, 9, 9, 11)
    # fewer values per sample than the output needs
    with mmcv_deform_conv_exportable(17), pytest.raises(
            ValueError, match='reads 1782 offset values per sample'):
        conv(x, torch.zeros(2, 18, 4, 4), mask)
    # a larger map whose samples are not contiguous (channels last)
    offset = torch.zeros(2, 18, 18, 22).contiguous(
        memory_format=torch.channels_last)
    with mmcv_deform_conv_exportable(17), pytest.raises(
            ValueError, match='in memory order'):
        conv(x, offset, mask)


@pytest.mark.parametrize('modulated', [False, True], ids=['dcn', 'dcnv2'])
def test_far_off_and_nan_offsets_sample_zero(modulated, tmp_path):
    # a randomised DetectoRS's SAC computes offsets of 1e22 and more, which
    # onnxruntime's GridSample reads as garbage unless clamped
    model = _Offsets(modulated, 1, 1, 1, 1, 1).eval()
    with torch.no_grad():
        model.offset[:, 0::4] *= 1e22
        model.offset[:, 1::4] *= -1e25
        model.offset[:, 2, 0, :3] = float('nan')
    x = _features()
    with torch.no_grad():
        expected = model(x)
        with mmcv_deform_conv_exportable(17):
            ours = model(x)
    assert torch.isfinite(expected).all()
    assert (ours - expected).abs().max() <= 1e-4
    path = export_onnx(model, x, tmp_path / 'far.onnx', opset=17)
    verify_onnx(path, model, x, rtol=1e-4, atol=1e-4)


class _Sampling(torch.nn.Module):
    """TOOD's ``deform_sampling``: a depthwise DCN of ones whose channel
    and group count are read from the feature's (traced) shape."""

    def forward(self, feat, offset):
        _, channels, _, _ = feat.shape
        weight = feat.new_ones(channels, 1, 1, 1)
        return mmcv_deform_conv.deform_conv2d(feat, offset, weight, 1, 0, 1,
                                              channels, channels)


def test_group_count_read_from_a_traced_shape(tmp_path):
    import onnxruntime as ort
    model = _Sampling().eval()
    gen = torch.Generator().manual_seed(4)
    feat = torch.randn(1, 4, 9, 11, generator=gen)
    offset = torch.randn(1, 8, 9, 11, generator=gen) * 3
    path = str(tmp_path / 'tood.onnx')
    # dynamic axes: the sizes are graph values, not constants, as in
    # TOOD's head; the conv's kernel shape and groups must still be known
    with torch.no_grad(), mmcv_deform_conv_exportable(17):
        torch.onnx.export(
            model, (feat, offset),
            path,
            opset_version=17,
            dynamo=False,
            input_names=['feat', 'offset'],
            dynamic_axes={
                'feat': {
                    1: 'c',
                    2: 'h',
                    3: 'w'
                },
                'offset': {
                    1: 'c2',
                    2: 'h',
                    3: 'w'
                }
            })
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    got = session.run(None, {'feat': feat.numpy(), 'offset': offset.numpy()})
    with torch.no_grad():
        expected = model(feat, offset)
    assert (torch.from_numpy(got[0]) - expected).abs().max() <= 1e-4
