"""ONNX export of MMDetection detectors (issue 25, item 5): every raw output
of the heads against torch in onnxruntime.

Small zoo configs (ResNet-18 backbones where the zoo has ResNet-50), random
weights with every parameter and buffer randomised (``init_weights`` is
never called), one 128x128 image, opset 17, torch's legacy exporter.
"""
import sys

import mmdet.models  # noqa: F401  (tools/install.sh installs mmdet 3.3)
import numpy as np
import pytest
import torch
from mmdet.structures.bbox import distance2bbox
from mmengine.structures import InstanceData

from mmcpd.apis import build_model_from_cfg
from mmcpd.comb.tensor_mode import det_data_samples, tensor_forward
from mmcpd.deploy import export_onnx, verify_onnx
from mmcpd.deploy.adapter import _flatten
from mmcpd.deploy.mmdet_clip import MODULE
from mmcpd.prune.surgery.verify import randomize_model
from mmcpd.utils.config import load_config

R18_FPN = {
    'model.backbone.depth': 18,
    'model.neck.in_channels': [64, 128, 256, 512]
}
#: name -> (config, options, raw outputs per level of the head)
SINGLE_STAGE = {
    'retinanet': ('mmdet::retinanet/retinanet_r18_fpn_1x_coco.py', {}, 2),
    'fcos': ('mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py', R18_FPN, 3),
    'rtmdet': ('mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py', {}, 2),
    'ssdlite':
    ('mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py', {}, 2),
}
FASTER_RCNN = ('mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', R18_FPN)
TWO_STAGE = {
    'cascade_rcnn': 'mmdet::cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py',
    'mask_rcnn': 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
}
SIZE = 128
#: Where this module's forward overrides are imported from.
HERE = 'tests.test_deploy.test_det_export'


def build_detector(config: str, options: dict, seed: int = 0):
    """A zoo detector with every parameter and buffer randomised."""
    cfg = load_config(config)
    cfg.merge_from_dict(options)
    torch.manual_seed(seed)
    return randomize_model(build_model_from_cfg(cfg), seed).eval()


def image(seed: int = 1, batch: int = 1) -> torch.Tensor:
    return torch.randn(batch,
                       3,
                       SIZE,
                       SIZE,
                       generator=torch.Generator().manual_seed(seed))


def decoded_boxes(model, inputs):
    """Forward override: a dense head's boxes of its finest level, decoded
    from its anchors and clipped to the image as ``predict`` does (mmdet
    3.3 imports ``mmdet.core.export`` for the clip while exporting)."""
    cls_scores, bbox_preds = tensor_forward(model, inputs)[:2]
    head = model.bbox_head
    height, width = inputs.shape[-2:]
    anchors = head.prior_generator.single_level_grid_priors(
        bbox_preds[0].shape[-2:], 0, device=inputs.device)
    deltas = bbox_preds[0].permute(0, 2, 3,
                                   1).reshape(inputs.shape[0], -1,
                                              head.bbox_coder.encode_size)
    boxes = [
        head.bbox_coder.decode(anchors, d, max_shape=(int(height), int(width)))
        for d in deltas
    ]
    return cls_scores[0], torch.stack([getattr(b, 'tensor', b) for b in boxes])


def fixed_proposals(inputs: torch.Tensor, num: int = 48) -> torch.Tensor:
    """``num`` boxes drawn from the input's shape only (numpy's, so that the
    trace holds them as constants): centres on the image, scales
    ``sqrt(w * h)`` from 8 to 800 pixels, so that the RoI extractor maps
    them to every level of a 4-level FPN, aspect ratios from 1:2 to 2:1."""
    rng = np.random.default_rng(num)
    height, width = (int(s) for s in inputs.shape[-2:])
    centre = rng.uniform(size=(num, 2)) * [width, height]
    scale = 8 * 100**rng.uniform(size=(num, 1))
    ratio = 2**rng.uniform(-1, 1, size=(num, 1))
    side = np.concatenate([scale * ratio**0.5, scale / ratio**0.5], axis=1)
    boxes = np.concatenate([centre - side / 2, centre + side / 2], axis=1)
    return torch.from_numpy(boxes.astype(np.float32)).to(inputs.device)


def rpn_and_roi_outputs(model, inputs):
    """Forward override of a two-stage detector: the RPN's raw outputs and
    the RoI head's on :func:`fixed_proposals`."""
    feats = model.extract_feat(inputs)
    rpn = model.rpn_head(feats)
    proposals = [
        InstanceData(bboxes=fixed_proposals(inputs))
        for _ in range(inputs.shape[0])
    ]
    roi = model.roi_head(feats, proposals, det_data_samples(inputs))
    return rpn, roi


@pytest.fixture(scope='module')
def faster_rcnn():
    return build_detector(*FASTER_RCNN)


@pytest.mark.parametrize('name', list(SINGLE_STAGE))
def test_single_stage_raw_outputs_match_torch(name, tmp_path):
    config, options, per_level = SINGLE_STAGE[name]
    model = build_detector(config, options)
    x = image()
    path = export_onnx(model, x, tmp_path / f'{name}.onnx', opset=17)
    report = verify_onnx(path, model, x)
    levels = model.bbox_head.prior_generator.num_levels
    assert len(report) == per_level * levels
    # randomised weights: no output is (close to) constant zero
    assert min(r['scale'] for r in report.values()) > 1e-3


def test_dynamic_batch_detector(tmp_path):
    config, options, _ = SINGLE_STAGE['rtmdet']
    model = build_detector(config, options)
    path = export_onnx(model,
                       image(),
                       tmp_path / 'rtmdet.onnx',
                       dynamic_batch=True)
    verify_onnx(path, model, image(seed=2, batch=3))


def test_rpn_and_roi_head_on_fixed_proposals_match_torch(
        faster_rcnn, tmp_path):
    """mmcv's RoIAlign in an FPN's RoI extractor (every level used),
    exported at opset 17, with the forward override as an import path."""
    x = image()
    forward = f'{HERE}.rpn_and_roi_outputs'
    rois = fixed_proposals(x)
    levels = faster_rcnn.roi_head.bbox_roi_extractor.map_roi_levels(
        torch.cat([rois.new_zeros(len(rois), 1), rois], 1), 4)
    assert set(levels.tolist()) == {0, 1, 2, 3}
    path = export_onnx(faster_rcnn,
                       x,
                       tmp_path / 'frcnn.onnx',
                       opset=17,
                       forward=forward)
    report = verify_onnx(path, faster_rcnn, x, forward=forward)
    with torch.no_grad():
        (scores, deltas), (cls_score,
                           bbox_pred) = rpn_and_roi_outputs(faster_rcnn, x)
    assert len(report) == len(scores) + len(deltas) + 2
    names = list(report)
    assert report[names[-2]]['scale'] == pytest.approx(
        float(cls_score.abs().max()))
    assert report[names[-1]]['scale'] == pytest.approx(
        float(bbox_pred.abs().max()))


@pytest.mark.parametrize('name', list(TWO_STAGE))
def test_two_stage_tensor_mode_matches_torch(name, tmp_path):
    """Tensor mode of a two-stage detector (:func:`tensor_forward`): the
    RPN's raw outputs and the RoI heads' on fixed proposals, through mmcv's
    RoIAlign; Cascade R-CNN's stages decode and clip the boxes they pass on
    (``mmdet.core.export`` while exporting), Mask R-CNN adds its masks."""
    model = build_detector(TWO_STAGE[name], R18_FPN)
    x = image()
    path = export_onnx(model, x, tmp_path / f'{name}.onnx', opset=17)
    report = verify_onnx(path, model, x)
    levels = model.rpn_head.prior_generator.num_levels
    assert len(report) == 2 * levels + 2 + int(model.roi_head.with_mask)
    assert MODULE not in sys.modules


def test_box_decoding_exports_without_mmdet_core(tmp_path):
    """mmdet 3.3's decoder imports ``mmdet.core.export`` while exporting;
    the clipped boxes match torch's and the module is gone afterwards."""
    config, options, _ = SINGLE_STAGE['retinanet']
    model = build_detector(config, options)
    x = image()
    with torch.no_grad():
        _, boxes = decoded_boxes(model, x)
    # the clip is exercised on both sides of both axes
    for coords in (boxes[..., 0::2], boxes[..., 1::2]):
        assert bool((coords == 0).any()) and bool((coords == SIZE).any())
    path = export_onnx(model,
                       x,
                       tmp_path / 'boxes.onnx',
                       forward=decoded_boxes)
    # Random deltas (up to mmdet's max ratio) give boxes of thousands of
    # pixels before the clip: mmdet's eager and ONNX decoders order their
    # float32 ops differently and differ by about 1e-3 pixels there.
    report = verify_onnx(path, model, x, atol=1e-2, forward=decoded_boxes)
    assert len(report) == 2
    assert MODULE not in sys.modules and 'mmdet.core' not in sys.modules


class _DistanceDecoder(torch.nn.Module):
    """``distance2bbox`` (FCOS's, RTMDet's decoding) with a ``max_shape``
    of ints or of a tensor."""

    def __init__(self, as_tensor: bool):
        super().__init__()
        self.as_tensor = as_tensor

    def forward(self, distance):
        points = torch.stack(
            torch.meshgrid(
                torch.arange(distance.shape[1], dtype=torch.float32) * 8,
                torch.arange(2, dtype=torch.float32) * 8,
                indexing='ij'), -1).reshape(-1, 2)[:distance.shape[1]]
        max_shape = (SIZE, SIZE // 2)
        if self.as_tensor:
            max_shape = distance.new_tensor(max_shape)
        return distance2bbox(points, distance[0], max_shape)


@pytest.mark.parametrize('as_tensor', [False, True])
def test_distance_decoding_clips_as_torch(as_tensor, tmp_path):
    model = _DistanceDecoder(as_tensor)
    d = torch.rand(1, 32, 4, generator=torch.Generator().manual_seed(3))
    d = d * SIZE
    with torch.no_grad():
        boxes = model(d)
    assert bool((boxes[:, 2] == SIZE // 2).any())
    assert bool((boxes[:, 1] == 0).any())
    path = export_onnx(model, d, tmp_path / 'distance.onnx')
    verify_onnx(path, model, d)


def test_forward_override_is_checked(tmp_path):
    model = _DistanceDecoder(False)
    d = torch.rand(1, 8, 4)
    with pytest.raises(ImportError, match='no_such_forward'):
        export_onnx(model,
                    d,
                    tmp_path / 'a.onnx',
                    forward=f'{HERE}.no_such_forward')
    with pytest.raises(TypeError, match='should return tensors'):
        export_onnx(model,
                    d,
                    tmp_path / 'a.onnx',
                    forward=lambda m, x: {'x': 'not a tensor'})

    # a dict's tensors are exported in the order of its keys (Grid
    # R-CNN's RoI head returns one)
    def as_dict(m, x):
        return {'b': m(x) * 2, 'a': x + 1}

    path = export_onnx(model, d, tmp_path / 'b.onnx', forward=as_dict)
    report = verify_onnx(path, model, d, forward=as_dict)
    assert len(report) == 2
    assert _flatten(as_dict(model, d))[1].equal(d + 1)


def test_tensor_mode_is_the_default(tmp_path):
    """No override: what :func:`tensor_forward` returns, output by output."""
    config, options, _ = SINGLE_STAGE['ssdlite']
    model = build_detector(config, options)
    x = image()
    path = export_onnx(model, x, tmp_path / 'ssd.onnx')
    report = verify_onnx(path, model, x)
    with torch.no_grad():
        want = _flatten(tensor_forward(model, x))
    assert [r['scale'] for r in report.values()
            ] == pytest.approx([float(w.abs().max()) for w in want])
