"""MMDetection zoo detectors in tensor mode (issue 25, item 1), through the
comb's default forward, :class:`TensorModeAdapter` and the unverified comb.

Small versions of the zoo configs (ResNet-18 backbones), random weights
(``init_weights`` is never called, so nothing is downloaded), one 128x128
image.
"""
import mmdet.models  # noqa: F401  (tools/install.sh installs mmdet 3.3)
import pytest
import torch

from mmcpd.apis import build_model_from_cfg
from mmcpd.comb import default_forward, trace_groups
from mmcpd.comb.opaque import flat_tensors
from mmcpd.comb.tensor_mode import det_data_samples
from mmcpd.deploy import TensorModeAdapter
from mmcpd.utils.config import load_config

R18_FPN = {'model.backbone.depth': 18,
           'model.neck.in_channels': [64, 128, 256, 512]}
CONFIGS = {
    'retinanet': ('mmdet::retinanet/retinanet_r18_fpn_1x_coco.py', {}),
    'faster_rcnn': ('mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
                    R18_FPN),
    'detr': ('mmdet::detr/detr_r50_8xb2-150e_coco.py', {
        'model.backbone.depth': 18,
        'model.neck.in_channels': [512]
    }),
}
SIZE = 128


@pytest.fixture(scope='module')
def detectors():
    built = {}

    def get(name):
        if name not in built:
            path, options = CONFIGS[name]
            cfg = load_config(path)
            cfg.merge_from_dict(options)
            torch.manual_seed(0)
            built[name] = build_model_from_cfg(cfg)
        return built[name]

    return get


def _image():
    return torch.randn(1, 3, SIZE, SIZE)


def _check_head_outputs(name, out):
    if name == 'retinanet':  # per level: scores, box deltas
        cls_scores, bbox_preds = out
        assert len(cls_scores) == len(bbox_preds) == 5
        assert cls_scores[0].shape == (1, 9 * 80, SIZE // 8, SIZE // 8)
        assert bbox_preds[0].shape == (1, 9 * 4, SIZE // 8, SIZE // 8)
    elif name == 'faster_rcnn':  # the RoI head's, per proposal
        (cls_score, bbox_pred), = out
        assert cls_score.shape[1] == 81 and bbox_pred.shape[1] == 80 * 4
        assert cls_score.shape[0] == bbox_pred.shape[0] > 0
    else:  # DETR: per decoder layer and query
        cls_scores, bbox_preds = out
        assert cls_scores.shape == (6, 1, 100, 81)
        assert bbox_preds.shape == (6, 1, 100, 4)


@pytest.mark.parametrize('name', list(CONFIGS))
def test_default_forward_returns_the_heads_raw_outputs(detectors, name):
    model = detectors(name)
    x = _image()
    with torch.no_grad():
        out = default_forward(model, x)
    _check_head_outputs(name, out)


@pytest.mark.parametrize('name', ['faster_rcnn', 'detr'])
def test_samples_are_those_of_mmdets_own_data_path(detectors, name):
    """An image that the pipeline neither resizes nor pads, through the
    detector's data preprocessor (which adds ``batch_input_shape`` and
    ``pad_shape``), gives the same outputs as samples made from the shape;
    their metainfo agree."""
    from mmdet.structures import DetDataSample
    model = detectors(name)
    image = torch.randint(0, 256, (3, SIZE, SIZE), dtype=torch.uint8)
    sample = DetDataSample(metainfo=dict(
        img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE),
        scale_factor=(1.0, 1.0)))
    data = model.data_preprocessor(
        dict(inputs=[image], data_samples=[sample]), False)
    inputs, samples = data['inputs'], data['data_samples']
    built, = det_data_samples(inputs)
    for key, value in samples[0].metainfo.items():
        assert tuple(built.metainfo[key]) == tuple(value), key
    with torch.no_grad():
        expected = model(inputs, samples, mode='tensor')
        got = default_forward(model, inputs)
    for e, g in zip(flat_tensors(expected), flat_tensors(got)):
        torch.testing.assert_close(g, e, rtol=0, atol=0)


@pytest.mark.parametrize('name', list(CONFIGS))
def test_tensor_mode_adapter_runs_detectors(detectors, name):
    model = detectors(name)
    x = _image()
    with torch.no_grad():
        outs = TensorModeAdapter(model)(x)
        expected = flat_tensors(default_forward(model, x))
    assert isinstance(outs, tuple) and len(outs) == len(expected)
    for o, e in zip(outs, expected):
        torch.testing.assert_close(o, e)


def _prunable_names(result):
    return {m.name for g in result.prunable for m in g.members}


def test_comb_finds_the_groups_of_a_single_stage_detector(detectors):
    model = detectors('retinanet')
    result = trace_groups(model, _image())
    names = _prunable_names(result)
    # every residual stage, the FPN and both towers of the head
    for name in ('backbone.layer1.0.conv1.weight',
                 'backbone.layer4.1.conv1.weight',
                 'neck.fpn_convs.0.conv.weight',
                 'bbox_head.cls_convs.0.conv.weight',
                 'bbox_head.reg_convs.3.conv.weight'):
        assert name in names, name
    assert len(result.prunable) == 22
    # the classes and box deltas of every anchor are outputs
    frozen = {g.members[0].name: g.frozen for g in result.frozen}
    assert frozen['bbox_head.retina_cls.weight'] == 'model output'
    assert frozen['bbox_head.retina_reg.weight'] == 'model output'


@pytest.mark.parametrize('name', ['faster_rcnn', 'detr'])
def test_comb_traces_detectors_that_need_image_metas(detectors, name):
    """They ran in no tensor mode before; what they prune inside the forward
    (proposals, NMS) is issue 25's item 2."""
    result = trace_groups(detectors(name), _image())
    names = _prunable_names(result)
    assert 'backbone.layer1.0.conv1.weight' in names
    # what the heads predict per anchor, class or box never shrinks
    heads = ('rpn_head.rpn_cls', 'rpn_head.rpn_reg', 'bbox_head.fc_cls',
             'bbox_head.fc_reg')
    for group in result.prunable:
        for member in group.members:
            if member.name.rpartition('.')[0].endswith(heads):
                assert member.role == 'in', member  # their inputs only
