import numpy as np
import pytest
import torch

from mmcpd.datasets import DigitsDataset, load_digits_split
from mmcpd.registry import DATASETS


@pytest.fixture(scope='module')
def train_set():
    return DigitsDataset(split='train')


@pytest.fixture(scope='module')
def val_set():
    return DigitsDataset(split='val')


def test_split_sizes_cover_all_digits_once(train_set, val_set):
    from sklearn.datasets import load_digits

    assert len(train_set) == 1437
    assert len(val_set) == 360
    train_images, _ = load_digits_split('train')
    val_images, _ = load_digits_split('val')
    split_rows = np.concatenate([train_images, val_images]).reshape(1797, 64)
    # every digit is in exactly one split
    assert sorted(map(tuple,
                      split_rows)) == sorted(map(tuple,
                                                 load_digits().data))


def test_split_is_stratified(val_set):
    counts = np.bincount(val_set.get_gt_labels(), minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37


def test_items_are_rgb_uint8_images_with_labels(train_set):
    item = train_set[5]
    img = item['img']
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    assert (img[..., 0] == img[..., 2]).all()
    assert img.max() > 200 and img.min() == 0  # white ink on black
    assert item['gt_label'] in range(10)
    assert set(train_set.get_gt_labels()) == set(range(10))
    assert train_set.metainfo['classes'] == tuple('0123456789')


def test_img_size():
    dataset = DigitsDataset(split='val', img_size=16)
    assert dataset[0]['img'].shape == (16, 16, 3)
    assert dataset[0]['ori_shape'] == (16, 16)


def test_seed_fixes_split():
    a = DigitsDataset(split='val', seed=0)
    b = DigitsDataset(split='val', seed=0)
    c = DigitsDataset(split='val', seed=1)
    first = np.stack([a[i]['img'] for i in range(20)])
    assert np.array_equal(first, np.stack([b[i]['img'] for i in range(20)]))
    assert not np.array_equal(first, np.stack([c[i]['img']
                                               for i in range(20)]))


def test_harder_digits_fewer_noisy_occluded_fixed_by_seed():
    few = dict(split='train', img_size=16, max_per_class=7)
    clean = DigitsDataset(**few)
    a = DigitsDataset(noise_std=0.2, occlusion=0.5, **few)
    b = DigitsDataset(noise_std=0.2, occlusion=0.5, **few)
    assert len(a) == 70 and len(DigitsDataset(split='train')) == 1437
    assert np.bincount(a.get_gt_labels(), minlength=10).tolist() == [7] * 10
    assert np.array_equal(a.get_gt_labels(), clean.get_gt_labels())
    images = np.stack([a[i]['img'][..., 0] for i in range(len(a))])
    assert np.array_equal(images,
                          np.stack([b[i]['img'][..., 0] for i in range(70)]))
    # every image is noisy: most pixels differ from the clean image
    originals = np.stack([clean[i]['img'][..., 0] for i in range(70)])
    changed = (images != originals).mean(axis=(1, 2))
    assert (changed > 0.4).all()
    # and has an 8x8 patch of mid grey under the noise: some 8x8 window
    # averages near 128 (the noise has mean 0 there, std 51)
    means = np.stack([
        images[:, y:y + 8, x:x + 8].astype(float).mean(axis=(1, 2))
        for y in range(9) for x in range(9)
    ], axis=1)
    assert (np.abs(means - 128).min(axis=1) < 20).all()


def test_built_from_root_registry():
    dataset = DATASETS.build(dict(type='DigitsDataset', split='val'))
    assert isinstance(dataset, DigitsDataset)


@pytest.mark.parametrize('kwargs, culprit', [
    (dict(split='test'), '`split`'),
    (dict(val_fraction=1.2), '`val_fraction`'),
    (dict(img_size=4), '`img_size`'),
    (dict(noise_std=-0.1), '`noise_std`'),
    (dict(occlusion=1.0), '`occlusion`'),
    (dict(max_per_class=0), '`max_per_class`'),
])
def test_bad_arguments_name_the_culprit(kwargs, culprit):
    with pytest.raises(ValueError, match=culprit):
        DigitsDataset(**kwargs)


def test_mmpretrain_pipeline_and_accuracy(val_set):
    from mmpretrain.datasets.transforms import PackInputs
    from mmpretrain.evaluation import Accuracy

    dataset = DigitsDataset(split='val', pipeline=[PackInputs()])
    packed = dataset[3]
    assert packed['inputs'].shape == (3, 32, 32)
    assert packed['inputs'].dtype == torch.uint8
    sample = packed['data_samples']
    assert sample.gt_label.tolist() == [val_set[3]['gt_label']]
    assert sample.ori_shape == (32, 32)

    # a perfect and a wrong prediction give 100 and 0 top-1 accuracy
    metric = Accuracy(topk=(1, ))
    metric.dataset_meta = dataset.metainfo
    samples = []
    for i in range(10):
        sample = dataset[i]['data_samples'].to_dict()
        score = torch.zeros(10)
        score[dataset[i]['data_samples'].gt_label] = 1
        sample['pred_score'] = score if i < 5 else score.roll(1)
        samples.append(sample)
    metric.process(None, samples)
    assert metric.evaluate(10) == {'accuracy/top1': 50.0}
