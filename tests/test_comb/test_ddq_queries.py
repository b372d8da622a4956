"""DDQ DETR decodes fixed queries (issue 25): its NMS keeps every box.

DDQ picks its queries by mmcv's ``batched_nms`` (``pre_decoder``) and
masks the self-attention of the queries that NMS suppresses after every
decoder layer; both jumped on round-off, so verification froze all 72
groups. A ResNet-18 DDQ with 50 queries, one encoder and two decoder layers,
random weights, one 128 x 128 image.
"""
import mmdet.models  # noqa: F401  (tools/install.sh installs mmdet 3.3)
import pytest
import torch

from mmcpd.apis import build_model_from_cfg
from mmcpd.comb import default_forward
from mmcpd.comb.opaque import flat_tensors
from mmcpd.comb.query_selection import keep_all_nms, nms_keeps_all
from mmcpd.comb.tensor_mode import det_data_samples
from mmcpd.prune.surgery.verify import randomize_model
from mmcpd.utils.config import load_config


@pytest.fixture(scope='module')
def ddq():
    cfg = load_config('mmdet::ddq/ddq-detr-4scale_r50_8xb2-12e_coco.py')
    cfg.merge_from_dict({
        'model.backbone.depth': 18,
        'model.neck.in_channels': [128, 256, 512],
        'model.num_queries': 50,  # of 340 positions at 128 x 128
        'model.encoder.num_layers': 1,
        'model.decoder.num_layers': 2,  # one distinct-query selection
    })
    # randomised: mmdet leaves DDQ's `level_embed` uninitialised
    # (torch.Tensor(n, c)) until init_weights, so its outputs were NaN or
    # not as the process's memory happened to be (CI, stop 30)
    return randomize_model(build_model_from_cfg(cfg), seed=0).eval()


def test_keep_all_nms():
    from mmcv.ops import batched_nms
    boxes = torch.tensor([[0., 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]])
    scores = torch.tensor([.2, .9, .5])
    dets, keep = keep_all_nms(boxes, scores, max_num=2)
    assert keep.tolist() == [0, 1]
    assert torch.equal(dets, torch.cat([boxes[:2], scores[:2, None]], 1))
    cfg = dict(type='nms', iou_threshold=0.5)
    with nms_keeps_all():
        _, keep = batched_nms(boxes, scores, torch.ones(3), cfg)
    assert keep.tolist() == [0, 1, 2]  # none suppressed, none reordered
    _, keep = batched_nms(boxes, scores, torch.ones(3), cfg)
    assert keep.tolist() == [1, 2]  # mmcv's own NMS is back


def test_ddq_queries_do_not_follow_scores(ddq):
    """Rescoring the encoder's positions changes no output of the fixed
    forward, and the forward differs from the model's own."""
    x = torch.randn(1, 3, 128, 128)
    scorer = ddq.bbox_head.cls_branches[ddq.decoder.num_layers]
    saved = scorer.weight.detach().clone()
    try:
        with torch.no_grad():
            before = flat_tensors(default_forward(ddq, x))
            scorer.weight.normal_()
            after = flat_tensors(default_forward(ddq, x))
            picked = flat_tensors(ddq(x, det_data_samples(x), mode='tensor'))
    finally:
        with torch.no_grad():
            scorer.weight.copy_(saved)
    assert [t.shape for t in before] == [t.shape for t in picked]
    for b, a in zip(before, after):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, p) for a, p in zip(after, picked))


def test_ddq_comb_is_verified(ddq):
    """Verification keeps the groups (it froze every one of them when NMS
    picked the queries) and masked == pruned."""
    from mmcpd.prune.verified_comb import comb_model
    from .equivalence import (assert_masked_equals_pruned, random_removal,
                              randomise)
    model = randomise(ddq)
    x = torch.randn(1, 3, 128, 128)
    result = comb_model(model, x)
    assert not [g for g in result.frozen if 'verification' in str(g.frozen)]
    names = {m.name for g in result.prunable for m in g.members}
    assert 'encoder.layers.0.norms.1.weight' in names
    assert 'query_map.weight' in names
    assert_masked_equals_pruned(model, result, x, random_removal(result, .4),
                                forward=default_forward)
