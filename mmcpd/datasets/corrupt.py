"""Harder digits: fewer samples per class, pixel noise and occlusion.

The bundled digits are easy (a small ResNet reaches 99% top-1), so methods
that differ by a point cannot be told apart on them. These helpers make
them harder in ways a real data set is hard, deterministically from a
seed: fewer training samples, sensor noise and an occluding patch. Both
:class:`DigitsDataset` and :class:`DigitsSegDataset` use them.
"""
from typing import Optional, Tuple

import numpy as np


def check_corruption(noise_std: float, occlusion: float,
                     max_per_class: Optional[int]) -> None:
    """Raise ValueError naming the first argument out of range."""
    if not isinstance(noise_std, (int, float)) or not 0 <= noise_std <= 1:
        raise ValueError('`noise_std` should be in [0, 1], but got '
                         f'{noise_std!r}')
    if not isinstance(occlusion, (int, float)) or not 0 <= occlusion < 1:
        raise ValueError('`occlusion` should be in [0, 1), but got '
                         f'{occlusion!r}')
    if max_per_class is not None and (not isinstance(max_per_class, int)
                                      or max_per_class < 1):
        raise ValueError('`max_per_class` should be None or a positive '
                         f'int, but got {max_per_class!r}')


def take_per_class(images: np.ndarray, labels: np.ndarray,
                   max_per_class: Optional[int],
                   seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """At most ``max_per_class`` items of each class, drawn by ``seed``,
    in their original order; all items for None."""
    if max_per_class is None:
        return images, labels
    rng = np.random.default_rng(seed)
    keep = []
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        keep.extend(rng.permutation(idx)[:max_per_class])
    keep = np.sort(np.array(keep, dtype=np.int64))
    return images[keep], labels[keep]


def corrupt(grey: np.ndarray, rng: np.random.Generator, noise_std: float,
            occlusion: float) -> np.ndarray:
    """A grey uint8 image with one occluding patch and Gaussian noise.

    The patch, a square of side ``occlusion`` times the image side at a
    random place, is filled with mid grey (128) before the noise is added;
    the noise has standard deviation ``noise_std`` times 255, and the
    result is clipped to [0, 255].

    Args:
        grey (np.ndarray): A uint8 (H, W) image.
        rng (np.random.Generator): Source of the patch place and the noise.
        noise_std (float): Noise level as a fraction of full intensity.
        occlusion (float): Side of the patch as a fraction of the image's
            shorter side; 0 for none.

    Returns:
        np.ndarray: A new uint8 (H, W) image.
    """
    out = grey.astype(np.float32)
    height, width = out.shape
    side = int(round(occlusion * min(height, width)))
    if side > 0:
        y = int(rng.integers(height - side + 1))
        x = int(rng.integers(width - side + 1))
        out[y:y + side, x:x + side] = 128.0
    if noise_std > 0:
        out += rng.normal(0.0, noise_std * 255.0, out.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
