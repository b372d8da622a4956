import numpy as np
import pytest
import torch

from mmcpd.datasets import DigitsSegDataset, load_digits_split
from mmcpd.registry import DATASETS


@pytest.fixture(scope='module')
def val_set():
    return DigitsSegDataset(split='val', num_samples=50)


def test_sizes_and_metainfo(val_set):
    assert len(val_set) == 50
    item = val_set[0]
    assert item['img'].shape == (64, 64, 3) and item['img'].dtype == np.uint8
    assert item['gt_seg_map'].shape == (64, 64)
    assert item['seg_fields'] == ['gt_seg_map']
    classes = val_set.metainfo['classes']
    assert classes[0] == 'background' and len(classes) == 11
    assert len(val_set.metainfo['palette']) == 11


def test_labels_follow_the_ink(val_set):
    for i in range(len(val_set)):
        item = val_set[i]
        seg, grey = item['gt_seg_map'], item['img'][..., 0]
        assert seg.max() <= 10
        # 1 to 4 digits, each a different pasted image
        assert 1 <= len(np.unique(seg)) - 1 <= 4
        # digit pixels are bright, background pixels are not (threshold 0.3)
        assert grey[seg > 0].min() >= 0.3 * 255
        assert (grey[seg == 0] < 0.3 * 255).all()
    # over the set, every digit class shows up
    labels = np.unique(
        np.concatenate([val_set[i]['gt_seg_map'].ravel() for i in range(50)]))
    assert labels.tolist() == list(range(11))


def test_val_canvases_show_val_digits_only():
    # an 8x8 canvas filled by one 8x8 digit shows that digit unscaled
    dataset = DigitsSegDataset(
        split='val',
        num_samples=30,
        canvas_size=8,
        digit_size=(8, 8),
        num_digits=(1, 1))
    images, labels = load_digits_split('val')
    train_images, _ = load_digits_split('train')
    val_grey = np.rint(images * 255 / 16).astype(np.uint8)
    train_grey = np.rint(train_images * 255 / 16).astype(np.uint8)
    for i in range(len(dataset)):
        item = dataset[i]
        grey = item['img'][..., 0]
        match = np.flatnonzero((val_grey == grey).all(axis=(1, 2)))
        assert len(match) >= 1
        assert not (train_grey == grey).all(axis=(1, 2)).any()
        label = labels[match[0]] + 1
        assert set(np.unique(item['gt_seg_map'])) == {0, label}


def test_deterministic_by_seed():
    a = DigitsSegDataset(split='train', num_samples=5, seed=3)
    b = DigitsSegDataset(split='train', num_samples=5, seed=3)
    c = DigitsSegDataset(split='train', num_samples=5, seed=4)
    assert all(
        np.array_equal(a[i]['gt_seg_map'], b[i]['gt_seg_map'])
        and np.array_equal(a[i]['img'], b[i]['img']) for i in range(5))
    assert not all(
        np.array_equal(a[i]['gt_seg_map'], c[i]['gt_seg_map'])
        for i in range(5))


def test_train_and_val_differ():
    train = DigitsSegDataset(split='train', num_samples=5)
    val = DigitsSegDataset(split='val', num_samples=5)
    assert not np.array_equal(train[0]['img'], val[0]['img'])


def test_canvas_and_digit_size():
    dataset = DigitsSegDataset(
        split='val',
        num_samples=10,
        canvas_size=40,
        digit_size=(20, 20),
        num_digits=(1, 1))
    for i in range(10):
        seg = dataset[i]['gt_seg_map']
        assert seg.shape == (40, 40)
        rows, cols = np.nonzero(seg)
        assert rows.max() - rows.min() < 20 and cols.max() - cols.min() < 20
        assert len(np.unique(seg)) == 2


def test_harder_canvases_keep_their_labels():
    kwargs = dict(split='val', num_samples=6, canvas_size=32,
                  digit_size=(10, 14), max_per_class=3)
    clean = DigitsSegDataset(**kwargs)
    hard = DigitsSegDataset(noise_std=0.2, occlusion=0.25, **kwargs)
    again = DigitsSegDataset(noise_std=0.2, occlusion=0.25, **kwargs)
    for i in range(6):
        img = hard[i]['img'][..., 0]
        assert np.array_equal(img, again[i]['img'][..., 0])
        # noise everywhere: most pixels differ from the clean canvas
        # (the digits' places are drawn the same way)
        assert (img != clean[i]['img'][..., 0]).mean() > 0.4
        assert np.array_equal(hard[i]['gt_seg_map'], clean[i]['gt_seg_map'])
        assert set(np.unique(hard[i]['gt_seg_map'])) <= set(range(11))
        assert hard[i]['gt_seg_map'].any()
    # the digits come from 3 images per class of the val split
    from mmcpd.datasets.corrupt import take_per_class
    from mmcpd.datasets.digits import load_digits_split
    images, labels = take_per_class(*load_digits_split('val'), 3, 0)
    assert len(images) == 30


def test_built_from_root_registry():
    dataset = DATASETS.build(
        dict(type='DigitsSegDataset', split='val', num_samples=3))
    assert isinstance(dataset, DigitsSegDataset) and len(dataset) == 3


@pytest.mark.parametrize('kwargs, culprit', [
    (dict(split='test'), '`split`'),
    (dict(num_samples=0), '`num_samples`'),
    (dict(canvas_size=4), '`canvas_size`'),
    (dict(digit_size=(24, 16)), '`digit_size`'),
    (dict(digit_size=(16, 80)), '`digit_size`'),
    (dict(num_digits=(0, 2)), '`num_digits`'),
    (dict(ink_threshold=1.5), '`ink_threshold`'),
    (dict(noise_std=2.0), '`noise_std`'),
    (dict(occlusion=-0.5), '`occlusion`'),
    (dict(max_per_class=2.5), '`max_per_class`'),
])
def test_bad_arguments_name_the_culprit(kwargs, culprit):
    with pytest.raises(ValueError, match=culprit):
        DigitsSegDataset(**kwargs)


def test_mmseg_pipeline_and_iou_metric():
    from mmseg.datasets.transforms import PackSegInputs
    from mmseg.evaluation import IoUMetric

    dataset = DigitsSegDataset(
        split='val', num_samples=4, pipeline=[PackSegInputs()])
    packed = dataset[0]
    assert packed['inputs'].shape == (3, 64, 64)
    sample = packed['data_samples']
    gt = sample.gt_sem_seg.data
    assert gt.shape == (1, 64, 64) and gt.dtype == torch.int64
    assert sample.ori_shape == (64, 64) and sample.img_shape == (64, 64)

    # predicting the ground truth gives 100 mIoU; all background does not
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dataset.metainfo
    samples = []
    for i in range(4):
        sample = dataset[i]['data_samples'].to_dict()
        sample['pred_sem_seg'] = dict(data=sample['gt_sem_seg']['data'])
        samples.append(sample)
    metric.process(None, samples)
    assert metric.compute_metrics(metric.results)['mIoU'] == 100.0
