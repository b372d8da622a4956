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
from mmcpd.comb.two_stage import two_stage_forward
from mmcpd.deploy import TensorModeAdapter
from mmcpd.prune.surgery.verify import randomize_model
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
    'deformable_detr': (
        'mmdet::deformable_detr/deformable-detr_r50_16xb2-50e_coco.py', {
            'model.backbone.depth': 18,
            'model.neck.in_channels': [128, 256, 512],
        }),
    'dino': ('mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py', {
        'model.backbone.depth': 18,
        'model.neck.in_channels': [128, 256, 512],
        'model.num_queries': 50,  # of 340 positions at 128 x 128
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
            # randomised: mmdet leaves Deformable DETR's `level_embed`
            # uninitialised (torch.Tensor(n, c)) until init_weights, so its
            # outputs were NaN or not as the process's memory happened to be
            built[name] = randomize_model(build_model_from_cfg(cfg))
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
    elif name == 'faster_rcnn':  # the RPN's per level, the RoI head's
        (rpn_scores, rpn_deltas), (cls_score, bbox_pred) = out
        assert len(rpn_scores) == len(rpn_deltas) == 5
        assert rpn_scores[0].shape == (1, 3, SIZE // 4, SIZE // 4)
        assert cls_score.shape[1] == 81 and bbox_pred.shape[1] == 80 * 4
        # on the fixed proposals: 4 sides x 4 centres
        assert cls_score.shape[0] == bbox_pred.shape[0] == 16
    else:  # the DETRs: per decoder layer and query
        cls_scores, bbox_preds = out
        queries, classes = {'detr': (100, 81), 'deformable_detr': (300, 80),
                            'dino': (50, 80)}[name]
        assert cls_scores.shape == (6, 1, queries, classes)
        assert bbox_preds.shape == (6, 1, queries, 4)


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
        if name == 'faster_rcnn':  # no proposals picked (issue 25, item 2)
            expected = two_stage_forward(model, inputs, samples)
        else:
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
    """They ran in no tensor mode before. Faster R-CNN's FPN reaches its
    RoI head through RoIAlign and a ``new_zeros`` buffer (issue 25, item
    3): prunable, with nothing opaque."""
    result = trace_groups(detectors(name), _image())
    names = _prunable_names(result)
    assert 'backbone.layer1.0.conv1.weight' in names
    if name == 'faster_rcnn':
        assert 'neck.fpn_convs.0.conv.weight' in names
        assert 'roi_head.bbox_head.shared_fcs.0.weight' in names
        assert not result.warnings, result.warnings
    # what the heads predict per anchor, class or box never shrinks
    heads = ('rpn_head.rpn_cls', 'rpn_head.rpn_reg', 'bbox_head.fc_cls',
             'bbox_head.fc_reg')
    for group in result.prunable:
        for member in group.members:
            if member.name.rpartition('.')[0].endswith(heads):
                assert member.role == 'in', member  # their inputs only


def test_two_stage_comb_is_exact_and_verified(detectors):
    """Issue 25, item 2: on fixed proposals nothing is picked by score, so
    verification keeps Faster R-CNN's groups (it froze 16 of 21, at random,
    when NMS picked the proposals) and masked == pruned with random units
    of every group removed."""
    from mmcpd.prune.verified_comb import comb_model
    from .equivalence import (assert_masked_equals_pruned, random_removal,
                              randomise)
    model = randomise(detectors('faster_rcnn'))
    x = _image()
    result = comb_model(model, x)
    assert not [g for g in result.frozen if 'verification' in str(g.frozen)]
    names = _prunable_names(result)
    assert 'neck.fpn_convs.3.conv.weight' in names
    assert len(result.prunable) == 17
    assert_masked_equals_pruned(model, result, x, random_removal(result, .4),
                                forward=default_forward)


def test_dino_decodes_queries_that_no_score_picks(detectors):
    """Issue 25, item 2: DINO's queries are fixed positions, spread over
    all levels, not the ``topk`` of its encoder's scores, so the masked
    and the pruned model decode the same ones: changing the weights that
    score the positions changes no output."""
    from mmcpd.comb.query_selection import FixedTopk
    with FixedTopk():
        values, index = torch.topk(torch.randn(2, 9, 3), 4, dim=1)
    assert index[:, :, 0].tolist() == [[0, 3, 5, 8]] * 2
    assert torch.equal(index[..., 0], index[..., 2])
    model = detectors('dino').eval()
    x = _image()
    scorer = model.bbox_head.cls_branches[model.decoder.num_layers]
    with torch.no_grad():
        before = flat_tensors(default_forward(model, x))
        scorer.weight.normal_()
        after = flat_tensors(default_forward(model, x))
        picked = flat_tensors(model(x, det_data_samples(x), mode='tensor'))
    for b, a in zip(before, after):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, p) for a, p in zip(after, picked))


@pytest.mark.parametrize('name', ['detr', 'deformable_detr', 'dino'])
def test_detr_stream_takes_the_positional_table_along(detectors, name):
    """Issue 25: the 256 channels of the transformer stream (the input
    projection and every encoder layer) were frozen by
    ``pos_embed.view(bs, c, -1)``; the sine table's kept channels are now a
    member of the stream's group. Deformable DETR's query embedding, split
    by the encoder's width, takes the decoder along, whose self-attention
    makes a unit one head (32 channels); DINO's units are the neck's
    GroupNorm groups (8 channels). Only the heads' outputs stay."""
    from mmcpd.comb.fixed_tables import SELECT_BUFFER
    result = trace_groups(detectors(name), _image())
    table = f'positional_encoding.{SELECT_BUFFER}'
    stream = next(g for g in result.groups
                  if table in {m.name for m in g.members})
    units = {'detr': 8, 'deformable_detr': 8, 'dino': 32}[name]
    assert stream.prunable and stream.num_units == units, stream
    names = {m.name for m in stream.members}
    assert 'encoder.layers.5.norms.1.weight' in names
    if name != 'dino':
        assert 'decoder.layers.5.norms.2.weight' in names
    if name == 'deformable_detr':
        assert 'query_embedding.weight' in names
    # what stays: the classes (and DETR's boxes), and boxes or reference
    # points (2 or 4 channels, one unit) that meet constant anchors
    frozen = {g.root: g.channels for g in result.frozen}
    assert frozen == {
        'detr': {'bbox_head.fc_cls.weight': 81, 'bbox_head.fc_reg.weight': 4},
        'deformable_detr': {'reference_points_fc.weight': 2,
                            'bbox_head.cls_branches.0.weight': 80},
        'dino': {'bbox_head.cls_branches.6.weight': 80,
                 'bbox_head.reg_branches.6.4.weight': 4,
                 'bbox_head.cls_branches.0.weight': 80},
    }[name]
