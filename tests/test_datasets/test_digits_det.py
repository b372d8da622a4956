"""The COCO detection set of digit canvases (issue 25): what is written,
what MMDetection reads back, and what its COCO metric makes of it."""
import json
import os

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from mmcpd.datasets import DigitsDetDataset, load_digits_split
from mmcpd.datasets.digits_det import ANN_FILE, coco_digits, generate_split
from mmcpd.registry import DATASETS


@pytest.fixture(scope='module')
def val_split():
    return coco_digits('val', num_samples=40)


def test_coco_dict_and_canvases(val_split):
    canvases, coco = val_split
    assert len(canvases) == len(coco['images']) == 40
    assert [c['name'] for c in coco['categories']] == [str(i)
                                                       for i in range(10)]
    assert all(c.shape == (64, 64, 3) and c.dtype == np.uint8
               for c in canvases)
    per_image = np.bincount([a['image_id'] for a in coco['annotations']],
                            minlength=40)
    assert per_image.min() >= 1 and per_image.max() <= 3
    ids = [a['id'] for a in coco['annotations']]
    assert len(set(ids)) == len(ids)
    # every class shows up
    assert {a['category_id'] for a in coco['annotations']} == set(range(1, 11))


def test_boxes_and_masks_are_the_ink(val_split):
    canvases, coco = val_split
    covered = [np.zeros((64, 64), bool) for _ in canvases]
    for ann in coco['annotations']:
        mask = mask_utils.decode(ann['segmentation']).astype(bool)
        grey = canvases[ann['image_id']][..., 0]
        assert (grey[mask] >= 0.3 * 255).all()
        assert ann['area'] == mask.sum()
        ys, xs = np.nonzero(mask)
        x, y, w, h = ann['bbox']
        # tight: the ink touches all four sides of the box
        assert (x, y) == (xs.min(), ys.min())
        assert (x + w, y + h) == (xs.max() + 1, ys.max() + 1)
        assert not (covered[ann['image_id']] & mask).any()  # no overlap
        covered[ann['image_id']] |= mask
    for grey, ink in zip(canvases, covered):
        assert (grey[..., 0][~ink] < 0.3 * 255).all()


def test_val_canvases_show_val_digits_with_their_class():
    # an 8x8 canvas filled by one 8x8 digit shows that digit unscaled
    canvases, coco = coco_digits('val', num_samples=20, canvas_size=8,
                                 digit_size=(8, 8), num_digits=(1, 1))
    images, labels = load_digits_split('val')
    train_images, _ = load_digits_split('train')
    val_grey = np.rint(images * 255 / 16).astype(np.uint8)
    train_grey = np.rint(train_images * 255 / 16).astype(np.uint8)
    for canvas, ann in zip(canvases, coco['annotations']):
        match = np.flatnonzero((val_grey == canvas[..., 0]).all(axis=(1, 2)))
        assert len(match) >= 1
        assert not (train_grey == canvas[..., 0]).all(axis=(1, 2)).any()
        assert ann['category_id'] == labels[match[0]] + 1


def test_deterministic_by_seed():
    a = coco_digits('train', num_samples=5, seed=3)
    b = coco_digits('train', num_samples=5, seed=3)
    c = coco_digits('train', num_samples=5, seed=4)
    assert a[1] == b[1] and all(np.array_equal(x, y)
                                for x, y in zip(a[0], b[0]))
    assert a[1]['annotations'] != c[1]['annotations']


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match='num_digits'):
        coco_digits('val', num_samples=2, num_digits=(3, 1))
    with pytest.raises(ValueError, match='split'):
        coco_digits('test', num_samples=2)


def test_written_once_and_again_for_other_parameters(tmp_path):
    folder = generate_split(str(tmp_path), 'val', num_samples=3)
    ann = os.path.join(folder, ANN_FILE)
    stamp = os.stat(ann).st_mtime_ns
    assert generate_split(str(tmp_path), 'val', num_samples=3) == folder
    assert os.stat(ann).st_mtime_ns == stamp  # reused
    generate_split(str(tmp_path), 'val', num_samples=4)
    with open(ann) as f:
        assert len(json.load(f)['images']) == 4
    assert sorted(os.listdir(tmp_path)) == ['val']  # no temporary left
    assert len(os.listdir(os.path.join(folder, 'images'))) == 4


def test_mmdet_reads_it_and_its_metric_scores_the_truth_as_perfect(
        tmp_path):
    """CocoDataset + LoadAnnotations give the json's boxes, labels and
    masks; CocoMetric on the written json rates them as predictions 1.0."""
    from mmdet.evaluation import CocoMetric
    from mmengine.registry import DefaultScope
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=True)
    ]
    with DefaultScope.overwrite_default_scope('mmdet'):
        dataset = DATASETS.build(
            dict(type='DigitsDetDataset', data_root=str(tmp_path),
                 split='val', num_samples=12, test_mode=True,
                 pipeline=pipeline))
    assert type(dataset).__name__ == 'CocoDataset' and len(dataset) == 12
    assert dataset.metainfo['classes'] == tuple(str(i) for i in range(10))
    canvases, coco = coco_digits('val', num_samples=12)
    metric = CocoMetric(
        ann_file=str(tmp_path / 'val' / ANN_FILE), metric='bbox')
    metric.dataset_meta = dataset.metainfo
    for i in range(len(dataset)):
        item = dataset[i]
        assert np.array_equal(item['img'], canvases[i])
        anns = [a for a in coco['annotations'] if a['image_id'] == i]
        boxes = item['gt_bboxes'].tensor
        expected = torch.tensor([[x, y, x + w, y + h]
                                 for x, y, w, h in (a['bbox']
                                                    for a in anns)],
                                dtype=boxes.dtype)
        torch.testing.assert_close(boxes, expected)
        assert item['gt_bboxes_labels'].tolist() == [
            a['category_id'] - 1 for a in anns
        ]
        assert item['gt_masks'].masks.sum() == sum(a['area'] for a in anns)
        pred = dict(bboxes=boxes, scores=torch.ones(len(boxes)),
                    labels=torch.as_tensor(item['gt_bboxes_labels']))
        metric.process({}, [dict(img_id=item['img_id'], ori_shape=(64, 64),
                                 pred_instances=pred)])
    assert metric.evaluate(12)['coco/bbox_mAP'] == 1.0


def test_keys_it_sets_are_refused(tmp_path):
    with pytest.raises(ValueError, match='ann_file'):
        DigitsDetDataset(str(tmp_path), ann_file='x.json')
