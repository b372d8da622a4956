"""YOLACT and CondInst in tensor mode (issue 25): their mask heads take the
positives that the box head's ``loss`` picks from ground truth; here they
run on fixed positives (:func:`mmcpd.comb.instance_masks.
fixed_positive_forward`), gathered from the box head's raw outputs.

Small versions (ResNet-18), random weights, one 64x64 image.
"""
import mmdet.models  # noqa: F401  (tools/install.sh installs mmdet 3.3)
import pytest
import torch
from mmengine.structures import InstanceData

from mmcpd.apis import build_model_from_cfg
from mmcpd.comb.instance_masks import (fixed_positive_indices,
                                       masks_from_positives)
from mmcpd.comb.opaque import flat_tensors
from mmcpd.comb.tensor_mode import tensor_forward
from mmcpd.prune.surgery.verify import randomize_model
from mmcpd.utils.config import load_config

SIZE = 64
R18 = {'model.backbone.depth': 18,
       'model.neck.in_channels': [64, 128, 256, 512]}
CONFIGS = {
    'yolact': 'mmdet::yolact/yolact_r50_1xb8-55e_coco.py',
    'condinst':
    'mmdet::condinst/condinst_r50_fpn_ms-poly-90k_coco_instance.py',
}


def _model(name, seed):
    cfg = load_config(CONFIGS[name])
    cfg.merge_from_dict(R18)
    torch.manual_seed(0)
    return randomize_model(build_model_from_cfg(cfg), seed).eval()


def test_fixed_positive_indices():
    # levels 4x4 and 2x2, 3 priors per location: centres (2, 2), (1, 1)
    assert fixed_positive_indices([(4, 4), (2, 2)], 3) == [
        (2 * 4 + 2) * 3, 16 * 3 + (1 * 2 + 1) * 3]


@pytest.mark.parametrize('name', list(CONFIGS))
def test_fixed_positive_forward(name):
    model = _model(name, seed=1)
    assert masks_from_positives(model)
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        bbox_outs, masks = tensor_forward(model, x)  # no ground truth
        levels = len(bbox_outs[0])
        # the reference: mmdet's own mask head on the same positives,
        # gathered by hand from the box head's outputs
        feats = model.extract_feat(x)
        raw = model.bbox_head(feats)
        sizes = [t.shape[-2:] for t in raw[0]]
        if name == 'yolact':
            coeffs = [t[0, :32, h // 2, w // 2]  # prior 0 of each centre
                      for t, (h, w) in zip(raw[2], sizes)]
            info = InstanceData(coeffs=torch.stack(coeffs))
        else:
            head = model.bbox_head
            params = [t[0, :, h // 2, w // 2]
                      for t, (h, w) in zip(raw[3], sizes)]
            points = torch.tensor(
                [[(w // 2) * s + s // 2, (h // 2) * s + s // 2]
                 for (h, w), s in zip(sizes, head.strides)],
                dtype=torch.float32)
            info = InstanceData(
                param_preds=torch.stack(params), points=points,
                strides=torch.tensor(head.strides, dtype=torch.float32))
        expected = flat_tensors(
            [t for t in model.mask_head(feats, [info]) if t is not None])
    got = flat_tensors(masks)
    assert len(got) == len(expected) == 1
    assert got[0].shape == expected[0].shape
    assert levels in got[0].shape  # one instance per level
    assert torch.equal(got[0], expected[0])
    assert all(torch.equal(a, b)
               for a, b in zip(flat_tensors(bbox_outs), flat_tensors(raw)))


def test_other_detectors_keep_their_forward():
    cfg = load_config('mmdet::retinanet/retinanet_r18_fpn_1x_coco.py')
    assert not masks_from_positives(build_model_from_cfg(cfg))
