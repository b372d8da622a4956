"""The handwritten digits that scikit-learn bundles, as a classification set.

``sklearn.datasets.load_digits`` ships 1,797 grey 8x8 images of the digits
0-9 (UCI "Optical Recognition of Handwritten Digits", 43 writers) inside the
scikit-learn package, so this dataset needs no download. The images are
upsampled to ``img_size`` and replicated to 3 channels, so that MMPretrain
models and pipelines take them like any RGB image.
"""
from typing import Optional, Sequence, Tuple

import numpy as np
from mmengine.dataset import BaseDataset

from mmcpd.registry import DATASETS
from mmcpd.datasets.corrupt import check_corruption, corrupt, take_per_class

#: The two splits; a stratified split fixed by ``seed`` makes them.
SPLITS = ('train', 'val')
#: Largest value in ``load_digits`` images (ink counts of a 4x4 block).
DIGITS_MAX = 16.0


def _check_split(split: str, val_fraction: float) -> None:
    if split not in SPLITS:
        raise ValueError(f'`split` should be one of {SPLITS}, but got '
                         f'{split!r}')
    if not 0 < val_fraction < 1:
        raise ValueError('`val_fraction` should be in (0, 1), but got '
                         f'{val_fraction}')


def load_digits_split(split: str,
                      val_fraction: float = 0.2,
                      seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """The 8x8 digits of one split, stratified by class and fixed by seed.

    Args:
        split (str): ``'train'`` or ``'val'``.
        val_fraction (float): Fraction of each class that goes to ``'val'``.
            Defaults to 0.2.
        seed (int): Seed of the split. Defaults to 0.

    Returns:
        tuple[np.ndarray, np.ndarray]: Images, float64 of shape (N, 8, 8)
        with values in [0, 16], and their labels, int64 of shape (N, ).
    """
    _check_split(split, val_fraction)
    # Imported here: scikit-learn is needed by the demo only.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    train_idx, val_idx = train_test_split(
        np.arange(len(digits.target)),
        test_size=val_fraction,
        random_state=seed,
        stratify=digits.target)
    idx = np.sort(train_idx if split == 'train' else val_idx)
    return digits.images[idx], digits.target[idx].astype(np.int64)


def upsample_digit(image: np.ndarray, size: int) -> np.ndarray:
    """Upsample one 8x8 digit to a ``size`` x ``size`` uint8 grey image.

    Bilinear interpolation, values rescaled from [0, 16] to [0, 255].

    Args:
        image (np.ndarray): A (8, 8) image of ``load_digits``.
        size (int): Side of the result in pixels.

    Returns:
        np.ndarray: A uint8 array of shape (size, size).
    """
    import cv2
    grey = image.astype(np.float32) * (255.0 / DIGITS_MAX)
    grey = cv2.resize(grey, (size, size), interpolation=cv2.INTER_LINEAR)
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)


@DATASETS.register_module()
class DigitsDataset(BaseDataset):
    """scikit-learn's 8x8 handwritten digits, upsampled to RGB images.

    The data stays in memory: every item holds the image as ``img`` (a uint8
    HWC array with 3 equal channels, white digit on black) and its class as
    ``gt_label``, so pipelines start after image loading (no
    ``LoadImageFromFile``), e.g. ``[dict(type='PackInputs')]`` with
    MMPretrain. ``metainfo['classes']`` is ``('0', ..., '9')``, which
    MMPretrain's ``Accuracy`` and visualisers read.

    Args:
        split (str): ``'train'`` (1,437 images with the defaults) or
            ``'val'`` (360). Defaults to ``'train'``.
        img_size (int): Side of the upsampled images. Defaults to 32.
        val_fraction (float): Fraction of each class in the val split.
            Defaults to 0.2.
        seed (int): Seed of the stratified train/val split: the same seed
            gives the same split on every machine. Defaults to 0.
        noise_std (float): Gaussian pixel noise, as a fraction of full
            intensity, added once per image (fixed by ``seed``). Defaults
            to 0.
        occlusion (float): Side of a mid-grey square pasted at a random
            place of each image, as a fraction of ``img_size``. Defaults
            to 0 (none).
        max_per_class (int, optional): Keep at most this many images of
            each class (drawn by ``seed``); None keeps all. Defaults to
            None.
        pipeline (Sequence[dict | callable]): Transforms applied to each
            item. Defaults to ``()``.
        **kwargs: Other arguments of :class:`mmengine.dataset.BaseDataset`
            (``metainfo``, ``indices``, ``test_mode``, ...).

    Examples:
        >>> dataset = DigitsDataset(split='val', img_size=32)
        >>> len(dataset), dataset[0]['img'].shape, dataset[0]['gt_label']
        (360, (32, 32, 3), 0)
    """
    METAINFO = dict(classes=tuple(str(i) for i in range(10)))

    def __init__(self,
                 split: str = 'train',
                 img_size: int = 32,
                 val_fraction: float = 0.2,
                 seed: int = 0,
                 noise_std: float = 0.0,
                 occlusion: float = 0.0,
                 max_per_class: Optional[int] = None,
                 pipeline: Sequence = (),
                 **kwargs) -> None:
        _check_split(split, val_fraction)
        if not isinstance(img_size, int) or img_size < 8:
            raise ValueError('`img_size` should be an int >= 8, but got '
                             f'{img_size!r}')
        check_corruption(noise_std, occlusion, max_per_class)
        self.noise_std = noise_std
        self.occlusion = occlusion
        self.max_per_class = max_per_class
        self.split = split
        self.img_size = img_size
        self.val_fraction = val_fraction
        self.seed = seed
        super().__init__(pipeline=list(pipeline), **kwargs)

    def load_data_list(self) -> list:
        images, labels = load_digits_split(self.split, self.val_fraction,
                                           self.seed)
        images, labels = take_per_class(images, labels, self.max_per_class,
                                        self.seed)
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split)])
        shape = (self.img_size, self.img_size)
        data_list = []
        for image, label in zip(images, labels):
            grey = upsample_digit(image, self.img_size)
            if self.noise_std or self.occlusion:
                grey = corrupt(grey, rng, self.noise_std, self.occlusion)
            data_list.append(
                dict(
                    img=np.repeat(grey[..., None], 3, axis=2),
                    gt_label=int(label),
                    img_shape=shape,
                    ori_shape=shape))
        return data_list

    def get_gt_labels(self) -> np.ndarray:
        """The class of every item, in order, as an int64 array."""
        return np.array(
            [self.get_data_info(i)['gt_label'] for i in range(len(self))],
            dtype=np.int64)

    def get_cat_ids(self, idx: int) -> list:
        """The class of item ``idx`` as a one-element list (for samplers)."""
        return [int(self.get_data_info(idx)['gt_label'])]

    def __repr__(self) -> str:
        return (
            f'{type(self).__name__}(split={self.split!r}, '
            f'img_size={self.img_size}, seed={self.seed}, '
            f'num_samples={len(self) if self._fully_initialized else "?"})')
