"""Canvases of scikit-learn's handwritten digits with per-pixel labels.

Each canvas is black with a few digits of random size pasted at random,
non-overlapping places; every pixel is labelled with the class of the digit
whose ink covers it (1 for '0', ..., 10 for '9') or 0 for background. The
digits of the train canvases come from the train split of
:class:`DigitsDataset` and those of the val canvases from its val split, so
val canvases show handwriting that training never saw.
"""
from typing import Optional, Sequence, Tuple

import numpy as np
from mmengine.dataset import BaseDataset

from mmcpd.registry import DATASETS
from mmcpd.datasets.corrupt import check_corruption, corrupt, take_per_class
from mmcpd.datasets.digits import (SPLITS, _check_split, load_digits_split,
                                   upsample_digit)

#: Colours of background and the ten digits (matplotlib's tab10).
PALETTE = ((0, 0, 0), (31, 119, 180), (255, 127, 14), (44, 160, 44),
           (214, 39, 40), (148, 103, 189), (140, 86, 75), (227, 119, 194),
           (127, 127, 127), (188, 189, 34), (23, 190, 207))
#: Attempts at a free place for a digit before it is left out.
MAX_TRIES = 50


def _check_range(name: str, value: Sequence[int], low: int,
                 high: int) -> Tuple[int, int]:
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, int) for v in value)
            or not low <= value[0] <= value[1] <= high):
        raise ValueError(f'`{name}` should be (min, max) ints with {low} <= '
                         f'min <= max <= {high}, but got {value!r}')
    return int(value[0]), int(value[1])


def _overlaps(box: Tuple[int, int, int], boxes: list) -> bool:
    y, x, s = box
    return any(y < by + bs and by < y + s and x < bx + bs and bx < x + s
               for by, bx, bs in boxes)


def free_square(rng: np.random.Generator, side: int, size: int,
                taken: list) -> Optional[Tuple[int, int, int]]:
    """A random ``(y, x, size)`` square of a ``side`` canvas that overlaps
    none of ``taken``, or None after :data:`MAX_TRIES` tries."""
    for _ in range(MAX_TRIES):
        square = (int(rng.integers(side - size + 1)),
                  int(rng.integers(side - size + 1)), size)
        if not _overlaps(square, taken):
            return square
    return None


@DATASETS.register_module()
class DigitsSegDataset(BaseDataset):
    """Segmentation of handwritten digits pasted on canvases.

    Generated in memory, deterministically from ``seed``: every item holds
    the canvas as ``img`` (uint8 HWC, 3 equal channels), its label map as
    ``gt_seg_map`` (uint8 HW, values in 0-10) and ``seg_fields``, so MMSeg
    pipelines start after loading (no ``LoadImageFromFile`` or
    ``LoadAnnotations``), e.g. ``[dict(type='PackSegInputs')]``.
    ``metainfo`` has ``classes`` (``'background', '0', ..., '9'``) and
    ``palette``, which MMSeg's ``IoUMetric`` and visualisers read.

    Args:
        split (str): ``'train'`` or ``'val'``: which split of the digits
            (see :class:`DigitsDataset`) the canvases show. Defaults to
            ``'train'``.
        num_samples (int): Number of canvases. Defaults to 1000.
        canvas_size (int): Side of a canvas in pixels. Defaults to 64.
        digit_size (tuple[int, int]): Smallest and largest side of a pasted
            digit in pixels. Defaults to (16, 24).
        num_digits (tuple[int, int]): Fewest and most digits tried per
            canvas; a digit that finds no free place after 50 tries is left
            out, the first always fits. Defaults to (2, 4).
        ink_threshold (float): Fraction of full intensity from which a pixel
            of an upsampled digit counts as the digit. Defaults to 0.3.
        val_fraction (float): Fraction of the digits in the val split.
            Defaults to 0.2.
        seed (int): Seed of the digit split and of the canvases. Defaults
            to 0.
        noise_std (float): Gaussian pixel noise on each canvas, as a
            fraction of full intensity (fixed by ``seed``). Defaults to 0.
        occlusion (float): Side of a mid-grey square pasted on each canvas
            after the digits, as a fraction of ``canvas_size``; the labels
            under it stay. Defaults to 0 (none).
        max_per_class (int, optional): Draw the digits from at most this
            many images per class of the split; None uses all. Defaults to
            None.
        pipeline (Sequence[dict | callable]): Transforms applied to each
            item. Defaults to ``()``.
        **kwargs: Other arguments of :class:`mmengine.dataset.BaseDataset`.

    Examples:
        >>> dataset = DigitsSegDataset(split='val', num_samples=100)
        >>> item = dataset[0]
        >>> item['img'].shape, item['gt_seg_map'].shape
        ((64, 64, 3), (64, 64))
    """
    METAINFO = dict(
        classes=('background', ) + tuple(str(i) for i in range(10)),
        palette=PALETTE)

    def __init__(self,
                 split: str = 'train',
                 num_samples: int = 1000,
                 canvas_size: int = 64,
                 digit_size: Sequence[int] = (16, 24),
                 num_digits: Sequence[int] = (2, 4),
                 ink_threshold: float = 0.3,
                 val_fraction: float = 0.2,
                 seed: int = 0,
                 noise_std: float = 0.0,
                 occlusion: float = 0.0,
                 max_per_class: Optional[int] = None,
                 pipeline: Sequence = (),
                 **kwargs) -> None:
        _check_split(split, val_fraction)
        check_corruption(noise_std, occlusion, max_per_class)
        self.noise_std = noise_std
        self.occlusion = occlusion
        self.max_per_class = max_per_class
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError('`num_samples` should be a positive int, but '
                             f'got {num_samples!r}')
        if not isinstance(canvas_size, int) or canvas_size < 8:
            raise ValueError('`canvas_size` should be an int >= 8, but got '
                             f'{canvas_size!r}')
        self.digit_size = _check_range('digit_size', digit_size, 8,
                                       canvas_size)
        self.num_digits = _check_range('num_digits', num_digits, 1, 100)
        if not 0 < ink_threshold < 1:
            raise ValueError('`ink_threshold` should be in (0, 1), but got '
                             f'{ink_threshold}')
        self.split = split
        self.num_samples = num_samples
        self.canvas_size = canvas_size
        self.ink_threshold = ink_threshold
        self.val_fraction = val_fraction
        self.seed = seed
        super().__init__(pipeline=list(pipeline), **kwargs)

    def load_data_list(self) -> list:
        images, labels = load_digits_split(self.split, self.val_fraction,
                                           self.seed)
        images, labels = take_per_class(images, labels, self.max_per_class,
                                        self.seed)
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split)])
        # corruption draws from its own stream: the canvases' layouts are
        # the same with and without it
        noise_rng = np.random.default_rng(
            [self.seed, SPLITS.index(self.split), 1])
        shape = (self.canvas_size, self.canvas_size)
        return [
            dict(
                **self._canvas(rng, noise_rng, images, labels),
                seg_fields=['gt_seg_map'],
                reduce_zero_label=False,
                img_shape=shape,
                ori_shape=shape) for _ in range(self.num_samples)
        ]

    def _canvas(self, rng: np.random.Generator,
                noise_rng: np.random.Generator, images: np.ndarray,
                labels: np.ndarray) -> dict:
        side = self.canvas_size
        grey = np.zeros((side, side), dtype=np.uint8)
        seg = np.zeros((side, side), dtype=np.uint8)
        boxes = []
        for _ in range(
                rng.integers(self.num_digits[0], self.num_digits[1] + 1)):
            size = int(
                rng.integers(self.digit_size[0], self.digit_size[1] + 1))
            index = int(rng.integers(len(labels)))
            box = free_square(rng, side, size, boxes)
            if box is None:
                continue
            boxes.append(box)
            y, x, _ = box
            digit = upsample_digit(images[index], size)
            ink = digit >= self.ink_threshold * 255
            grey[y:y + size, x:x + size] = digit
            seg[y:y + size, x:x + size][ink] = labels[index] + 1
        if self.noise_std or self.occlusion:
            grey = corrupt(grey, noise_rng, self.noise_std, self.occlusion)
        return dict(img=np.repeat(grey[..., None], 3, axis=2), gt_seg_map=seg)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(split={self.split!r}, '
                f'num_samples={self.num_samples}, '
                f'canvas_size={self.canvas_size}, seed={self.seed})')
