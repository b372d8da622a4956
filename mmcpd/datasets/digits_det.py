"""Canvases of scikit-learn's handwritten digits as a COCO detection set.

The canvases are made as those of
:class:`~mmcpd.datasets.DigitsSegDataset` (black, a few digits of random
size at random, non-overlapping places; train canvases show the digits of
the train split, val canvases those of the val split). Each digit becomes
one COCO instance: its class, the tight box of its ink and its ink mask
(RLE). A split is written once into a folder, as
MMDetection reads COCO data::

    <data_root>/<split>/images/000000.png, ...
    <data_root>/<split>/annotations.json    # COCO: images, annotations,
                                            # categories '0'..'9'
    <data_root>/<split>/params.json         # what generated it

and is generated again only where ``params.json`` differs from the
arguments. :func:`DigitsDetDataset` (registered in mmengine's root
``DATASETS``) generates a split if needed and returns MMDetection's own
``CocoDataset`` on it, so a detection config reads it with the usual
``LoadImageFromFile`` / ``LoadAnnotations`` pipeline and evaluates it with
``CocoMetric`` on ``<data_root>/val/annotations.json``.
"""
import json
import os
import os.path as osp
import shutil
import tempfile
from typing import Optional, Sequence

import numpy as np

from mmcpd.datasets.digits import (SPLITS, _check_split, load_digits_split,
                                   upsample_digit)
from mmcpd.datasets.digits_seg import _check_range, free_square
from mmcpd.registry import DATASETS

#: COCO category names, ids 1..10 in this order.
CLASSES = tuple(str(i) for i in range(10))
#: Files of one generated split.
ANN_FILE = 'annotations.json'
PARAMS_FILE = 'params.json'
IMAGE_DIR = 'images'


def _canvas(rng: np.random.Generator, images: np.ndarray,
            labels: np.ndarray, side: int, digit_size: tuple,
            num_digits: tuple, ink_threshold: float) -> tuple:
    """One canvas and its digits as ``(class index, ink mask)``: the
    placement of :class:`~mmcpd.datasets.DigitsSegDataset` (random sizes,
    non-overlapping squares, a digit that finds no place in 50 tries left
    out), with one mask per pasted digit."""
    grey = np.zeros((side, side), dtype=np.uint8)
    squares, instances = [], []
    for _ in range(rng.integers(num_digits[0], num_digits[1] + 1)):
        size = int(rng.integers(digit_size[0], digit_size[1] + 1))
        index = int(rng.integers(len(labels)))
        square = free_square(rng, side, size, squares)
        if square is None:
            continue
        y, x, _ = square
        digit = upsample_digit(images[index], size)
        mask = np.zeros((side, side), dtype=bool)
        mask[y:y + size, x:x + size] = digit >= ink_threshold * 255
        if not mask.any():  # an empty digit has no box
            continue
        squares.append(square)
        grey[y:y + size, x:x + size] = digit
        instances.append((int(labels[index]), mask))
    return np.repeat(grey[..., None], 3, axis=2), instances


def _box(mask: np.ndarray) -> list:
    """COCO ``[x, y, w, h]`` of a mask's pixels (a pixel covers
    ``[x, x + 1)``)."""
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return [x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0]


def _rle(mask: np.ndarray) -> dict:
    """COCO's compressed RLE of a binary mask, JSON-able."""
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle['counts'] = rle['counts'].decode('ascii')
    return rle


def coco_digits(split: str = 'train',
                num_samples: int = 400,
                canvas_size: int = 64,
                digit_size: Sequence[int] = (16, 24),
                num_digits: Sequence[int] = (1, 3),
                ink_threshold: float = 0.3,
                val_fraction: float = 0.2,
                seed: int = 0) -> tuple:
    """Generate one split in memory: canvases and their COCO dict.

    Args: as :func:`DigitsDetDataset`, less the folder.

    Returns:
        tuple[list[np.ndarray], dict]: The uint8 canvases (H, W, 3) and the
        COCO dict (``images``, ``annotations``, ``categories``), whose
        ``file_name`` entries are ``images/<index>.png``.
    """
    _check_split(split, val_fraction)
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError('`num_samples` should be a positive int, but got '
                         f'{num_samples!r}')
    if not isinstance(canvas_size, int) or canvas_size < 8:
        raise ValueError('`canvas_size` should be an int >= 8, but got '
                         f'{canvas_size!r}')
    digit_size = _check_range('digit_size', digit_size, 8, canvas_size)
    num_digits = _check_range('num_digits', num_digits, 1, 100)
    if not 0 < ink_threshold < 1:
        raise ValueError('`ink_threshold` should be in (0, 1), but got '
                         f'{ink_threshold}')
    digits, labels = load_digits_split(split, val_fraction, seed)
    rng = np.random.default_rng([seed, SPLITS.index(split), 2])
    canvases, images, annotations = [], [], []
    for index in range(num_samples):
        canvas, instances = _canvas(rng, digits, labels, canvas_size,
                                    digit_size, num_digits, ink_threshold)
        canvases.append(canvas)
        images.append(
            dict(id=index, file_name=f'{IMAGE_DIR}/{index:06d}.png',
                 height=canvas_size, width=canvas_size))
        for label, mask in instances:
            annotations.append(
                dict(id=len(annotations) + 1, image_id=index,
                     category_id=label + 1, bbox=_box(mask),
                     area=int(mask.sum()), segmentation=_rle(mask),
                     iscrowd=0))
    categories = [dict(id=i + 1, name=name) for i, name in enumerate(CLASSES)]
    coco = dict(images=images, annotations=annotations,
                categories=categories)
    return canvases, coco


def generate_split(data_root: str, split: str = 'train', **kwargs) -> str:
    """Write one split into ``<data_root>/<split>`` unless it is there with
    the same parameters; return that folder.

    The split is written into a temporary folder beside it and renamed into
    place, so processes that generate it at once (DDP ranks) never read a
    half-written one: the first rename wins, the others are dropped.

    Args:
        data_root (str): Folder of the dataset.
        split (str): ``'train'`` or ``'val'``. Defaults to ``'train'``.
        **kwargs: The other arguments of :func:`coco_digits`.

    Returns:
        str: ``<data_root>/<split>``.
    """
    import cv2
    params = dict(split=split, **kwargs)
    folder = osp.join(data_root, split)
    if _params_of(folder) == params:
        return folder
    os.makedirs(data_root, exist_ok=True)
    canvases, coco = coco_digits(split, **kwargs)
    tmp = tempfile.mkdtemp(prefix=f'.{split}-', dir=data_root)
    try:
        os.makedirs(osp.join(tmp, IMAGE_DIR))
        for image, info in zip(canvases, coco['images']):
            cv2.imwrite(osp.join(tmp, info['file_name']), image)
        with open(osp.join(tmp, ANN_FILE), 'w') as f:
            json.dump(coco, f)
        with open(osp.join(tmp, PARAMS_FILE), 'w') as f:
            json.dump(params, f)
        if osp.isdir(folder) and _params_of(folder) != params:
            shutil.rmtree(folder, ignore_errors=True)  # other parameters
        try:
            os.rename(tmp, folder)
        except OSError:  # another process renamed its copy first
            if _params_of(folder) != params:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _params_of(folder: str) -> Optional[dict]:
    path = osp.join(folder, PARAMS_FILE)
    if not osp.isfile(path) or not osp.isfile(osp.join(folder, ANN_FILE)):
        return None
    with open(path) as f:
        return json.load(f)


@DATASETS.register_module()
def DigitsDetDataset(data_root: str = 'data/digits_det',
                     split: str = 'train',
                     num_samples: int = 400,
                     canvas_size: int = 64,
                     digit_size: Sequence[int] = (16, 24),
                     num_digits: Sequence[int] = (1, 3),
                     ink_threshold: float = 0.3,
                     val_fraction: float = 0.2,
                     seed: int = 0,
                     **kwargs):
    """Detection of handwritten digits on canvases, as MMDetection's
    ``CocoDataset``, generated into ``data_root`` on first use.

    The arguments up to ``seed`` are those of
    :class:`~mmcpd.datasets.DigitsSegDataset` (defaults: 64x64 canvases
    with 1-3 digits of 16-24 px); the others go to ``CocoDataset``
    (``pipeline``, ``test_mode``, ``filter_cfg``, ...). ``ann_file``,
    ``data_prefix`` and ``metainfo`` (classes ``'0'``..``'9'``) are set
    here. ``CocoMetric(ann_file='<data_root>/val/annotations.json')``
    evaluates the val split.

    Args:
        data_root (str): Folder of the generated splits. Defaults to
            ``'data/digits_det'``.
        split (str): ``'train'`` or ``'val'``. Defaults to ``'train'``.
        num_samples (int): Number of canvases. Defaults to 400.
        canvas_size (int): Side of a canvas in pixels. Defaults to 64.
        digit_size (tuple[int, int]): Smallest and largest side of a
            pasted digit. Defaults to (16, 24).
        num_digits (tuple[int, int]): Fewest and most digits tried per
            canvas. Defaults to (1, 3).
        ink_threshold (float): Fraction of full intensity from which a
            pixel is ink (the mask, and so the box). Defaults to 0.3.
        val_fraction (float): Fraction of the digits in the val split.
            Defaults to 0.2.
        seed (int): Seed of the digit split and of the canvases. Defaults
            to 0.
        **kwargs: Other arguments of ``mmdet.datasets.CocoDataset``.

    Returns:
        mmdet.datasets.CocoDataset: The split.

    Examples:
        >>> dataset = DigitsDetDataset('data/digits_det', split='val',
        ...                            num_samples=100, test_mode=True)
        >>> dataset[0]['instances'][0]['bbox_label']
    """
    _check_split(split, val_fraction)
    # Imported here: mmdet is needed by detection configs only.
    from mmdet.datasets import CocoDataset
    for key in ('ann_file', 'data_prefix', 'metainfo'):
        if key in kwargs:
            raise ValueError(f'`{key}` is set by DigitsDetDataset, but got '
                             f'{kwargs[key]!r}')
    folder = generate_split(
        data_root,
        split,
        num_samples=num_samples,
        canvas_size=canvas_size,
        digit_size=list(digit_size),
        num_digits=list(num_digits),
        ink_threshold=ink_threshold,
        val_fraction=val_fraction,
        seed=seed)
    return CocoDataset(
        data_root=folder,
        ann_file=ANN_FILE,
        data_prefix=dict(img=''),
        metainfo=dict(classes=CLASSES),
        **kwargs)


__all__ = ['CLASSES', 'DigitsDetDataset', 'coco_digits', 'generate_split']
