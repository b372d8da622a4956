"""mmcv's RoIAlign exported at opset 17 as ONNX RoiAlign: element-wise
what mmcv's CPU kernel computes, in onnxruntime (issue 25, item 5)."""
import numpy as np
import onnx
import pytest
import torch
from mmcv.ops import RoIAlign
from mmcv.ops.roi_align import RoIAlignFunction

from mmcpd.deploy import export_onnx, verify_onnx
from mmcpd.deploy.roi_align import MIN_OPSET


class _OnRoIs(torch.nn.Module):
    """mmcv's RoIAlign on RoIs held as a buffer: boxes on both images of a
    batch of two, inside, across and outside the feature map's borders,
    some narrower than a feature pixel."""

    def __init__(self, seed: int = 0, num: int = 60, **kwargs):
        super().__init__()
        self.roi_align = RoIAlign(**kwargs)
        gen = torch.Generator().manual_seed(seed)
        batch = torch.randint(0, 2, (num, 1), generator=gen).float()
        # in feature map pixels (the map is 24 x 20), then in the image's
        corner = torch.rand(num, 2, generator=gen) * 26 - 2
        side = torch.rand(num, 2, generator=gen) * 12
        side[:num // 6] *= 0.05  # narrower than a feature pixel
        boxes = torch.cat([corner, corner + side], 1)
        self.register_buffer(
            'rois', torch.cat([batch, boxes / kwargs['spatial_scale']], 1))

    def forward(self, x):
        return self.roi_align(x, self.rois)


SETTINGS = [
    dict(output_size=7, spatial_scale=0.25, sampling_ratio=0, aligned=True),
    dict(output_size=(7, 5),
         spatial_scale=0.25,
         sampling_ratio=2,
         aligned=True),
    dict(output_size=7, spatial_scale=0.25, sampling_ratio=0, aligned=False),
    dict(output_size=(4, 6),
         spatial_scale=0.5,
         sampling_ratio=3,
         aligned=False),
]


def _features():
    gen = torch.Generator().manual_seed(1)
    return torch.randn(2, 8, 20, 24, generator=gen)


@pytest.mark.parametrize('kwargs', SETTINGS)
def test_roi_align_matches_mmcv(kwargs, tmp_path):
    model = _OnRoIs(**kwargs)
    x = _features()
    path = export_onnx(model, x, tmp_path / 'roi.onnx', opset=17)
    nodes = [n for n in onnx.load(path).graph.node if n.op_type == 'RoiAlign']
    assert len(nodes) == 1
    mode = {
        a.name: a.s.decode()
        for a in nodes[0].attribute
        if a.name == 'coordinate_transformation_mode'
    }
    assert mode == {
        'coordinate_transformation_mode':
        'half_pixel' if kwargs['aligned'] else 'output_half_pixel'
    }
    # mmcv's CPU kernel and onnxruntime's sum the same samples in the same
    # order: equal to float32 round-off
    verify_onnx(path, model, x, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        peak = model(x).abs().amax(dim=(1, 2, 3))
    # both kinds of RoI: off the map (all zero) and on it
    assert bool((peak == 0).any()) and int((peak > 0).sum()) > len(peak) // 2


def test_mmcvs_own_symbolic_is_back_after_export(tmp_path):
    own = RoIAlignFunction.__dict__['symbolic']
    export_onnx(_OnRoIs(**SETTINGS[0]), _features(), tmp_path / 'roi.onnx')
    assert RoIAlignFunction.__dict__['symbolic'] is own


def test_max_mode_and_old_opsets_are_refused(tmp_path):
    own = RoIAlignFunction.__dict__['symbolic']
    model = _OnRoIs(**SETTINGS[0], pool_mode='max')
    with pytest.raises(ValueError, match="pool_mode='max'"):
        export_onnx(model, _features(), tmp_path / 'max.onnx')
    model = _OnRoIs(**SETTINGS[0])
    old = MIN_OPSET - 1
    with pytest.raises(ValueError, match=f'opset >= {MIN_OPSET}.*{old}'):
        export_onnx(model, _features(), tmp_path / 'old.onnx', opset=old)
    assert RoIAlignFunction.__dict__['symbolic'] is own


def test_batch_index_is_int64_without_squeeze(tmp_path):
    """The batch index column becomes int64 ``batch_indices`` of one dim:
    a 1-d Gather, no Squeeze (whose ``axes`` attribute opset 13 removed)."""
    path = export_onnx(_OnRoIs(**SETTINGS[0]),
                       _features(),
                       tmp_path / 'roi.onnx',
                       opset=17)
    proto = onnx.shape_inference.infer_shapes(onnx.load(path))
    ops = {n.op_type for n in proto.graph.node}
    assert 'Squeeze' not in ops
    node = next(n for n in proto.graph.node if n.op_type == 'RoiAlign')
    infos = {v.name: v for v in list(proto.graph.value_info)}
    inits = {i.name: i for i in proto.graph.initializer}
    index = node.input[2]
    if index in inits:  # constant-folded
        array = onnx.numpy_helper.to_array(inits[index])
        assert array.dtype == np.int64 and array.ndim == 1
    else:
        kind = infos[index].type.tensor_type
        assert kind.elem_type == onnx.TensorProto.INT64
        assert len(kind.shape.dim) == 1
