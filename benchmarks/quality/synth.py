"""Procedural data sets of the transfer benchmark (``transfer.py``).

Generated in memory from a seed, no download: task families that differ
from the bundled digits in image statistics (colour, textured and noisy
backgrounds, 1/f spectra), resolution and class count.

* :class:`TexturesDataset` (classification): 8 texture families (gratings
  at three orientations, checkerboards, dots, rings, 1/f noise, blobs) at
  random frequency, phase, colours and contrast, with pixel noise.
* :class:`Shapes16Dataset` (classification): 16 shape classes (filled and
  hollow primitives, bars, L/T, crosses) at random place, size and colour
  on a coloured 1/f-noise background, with noise and an occluder.
* :class:`ShapesSegDataset` (segmentation): 1-3 of 4 shape classes on a
  coloured 1/f-noise background; every pixel labelled with its shape (0 is
  background).

The classes are registered in mmengine's root ``DATASETS`` registry (as
mmcpd's own data sets are), so MMPretrain and MMSeg configs find them once
this module is imported (``custom_imports = dict(imports=['synth'])``
with ``benchmarks/quality`` on ``sys.path``, as ``transfer.py`` sets).
A candidate for ``mmcpd/datasets/`` if it proves useful.
"""
from typing import Sequence

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.registry import DATASETS

SPLITS = ('train', 'val')


def pink_noise(rng: np.random.Generator, side: int, slope: float = 1.5,
               channels: int = 1) -> np.ndarray:
    """Noise with a 1/f**slope amplitude spectrum, scaled to [0, 1]."""
    fy = np.fft.fftfreq(side)[:, None]
    fx = np.fft.fftfreq(side)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    amp = 1.0 / f**slope
    amp[0, 0] = 0.0
    out = []
    for _ in range(channels):
        phase = rng.uniform(0, 2 * np.pi, (side, side))
        img = np.real(np.fft.ifft2(amp * np.exp(1j * phase)))
        img = (img - img.min()) / (np.ptp(img) + 1e-8)
        out.append(img)
    return np.stack(out, axis=-1)


def _colours(rng: np.random.Generator, n: int = 2) -> np.ndarray:
    return rng.uniform(0, 1, (n, 3))


def _finish(img: np.ndarray, rng: np.random.Generator,
            noise_std: float) -> np.ndarray:
    """float [0, 1] HWC -> noisy uint8."""
    if noise_std:
        img = img + rng.normal(0, noise_std, img.shape)
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)


def _texture(kind: int, rng: np.random.Generator, side: int) -> np.ndarray:
    """A [0, 1] mask of texture family ``kind``."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64)
    freq = rng.uniform(0.12, 0.35)  # cycles per pixel / (2 pi)
    phase = rng.uniform(0, 2 * np.pi)
    jitter = rng.uniform(-0.25, 0.25)  # radians
    if kind < 3:  # gratings: horizontal, vertical, diagonal
        theta = (0.0, np.pi / 2, np.pi / 4 * rng.choice([1, 3]))[kind]
        theta += jitter
        u = xx * np.cos(theta) + yy * np.sin(theta)
        return 0.5 + 0.5 * np.sin(2 * np.pi * freq * u / 2 + phase)
    if kind == 3:  # checkerboard
        theta = jitter
        u = xx * np.cos(theta) + yy * np.sin(theta)
        v = -xx * np.sin(theta) + yy * np.cos(theta)
        period = rng.uniform(3, 8)
        return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(
            np.float64)
    if kind == 4:  # dots on a jittered lattice
        period = rng.uniform(4, 8)
        radius = period * rng.uniform(0.2, 0.35)
        cy = (yy + rng.uniform(0, period)) % period - period / 2
        cx = (xx + rng.uniform(0, period)) % period - period / 2
        return (cy**2 + cx**2 < radius**2).astype(np.float64)
    if kind == 5:  # concentric rings around a random centre
        c = rng.uniform(0, side, 2)
        r = np.sqrt((yy - c[0])**2 + (xx - c[1])**2)
        return 0.5 + 0.5 * np.sin(2 * np.pi * freq * r / 2 + phase)
    if kind == 6:  # 1/f noise, fine
        return pink_noise(rng, side, slope=rng.uniform(0.8, 1.2))[..., 0]
    # 7: blobs: steep-spectrum noise, thresholded
    noise = pink_noise(rng, side, slope=rng.uniform(2.2, 2.8))[..., 0]
    return (noise > np.median(noise)).astype(np.float64)


class _Synth(BaseDataset):
    """Shared arguments: ``split``, ``num_samples``, ``img_size``,
    ``seed``, ``noise_std``, ``pipeline``."""

    def __init__(self,
                 split: str = 'train',
                 num_samples: int = 1000,
                 img_size: int = 24,
                 seed: int = 0,
                 noise_std: float = 0.1,
                 pipeline: Sequence = (),
                 **kwargs) -> None:
        if split not in SPLITS:
            raise ValueError(f'`split` should be one of {SPLITS}, but got '
                             f'{split!r}')
        self.split = split
        self.num_samples = num_samples
        self.img_size = img_size
        self.seed = seed
        self.noise_std = noise_std
        super().__init__(pipeline=list(pipeline), **kwargs)

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng(
            [self.seed, SPLITS.index(self.split), 7919])


@DATASETS.register_module()
class TexturesDataset(_Synth):
    """8 procedural texture families in random colours (classification).

    Each image: the family's mask blended between two random colours at a
    random contrast (0.4-1 of colours at least half the range apart),
    plus Gaussian noise.
    """
    METAINFO = dict(classes=('grating_h', 'grating_v', 'grating_d',
                             'checker', 'dots', 'rings', 'pink', 'blobs'))

    def __init__(self, contrast=(0.4, 1.0), **kwargs) -> None:
        self.contrast = contrast
        super().__init__(**kwargs)

    def load_data_list(self) -> list:
        rng = self._rng()
        side = self.img_size
        n_cls = len(self.METAINFO['classes'])
        out = []
        for i in range(self.num_samples):
            label = i % n_cls
            mask = _texture(label, rng, side)[..., None]
            # two colours far apart (the complement of a random colour,
            # pulled towards grey by a random amount)
            a = rng.uniform(0, 1, 3)
            b = 1.0 - a
            if np.abs(a - b).max() < 0.5:
                b = np.where(a < 0.5, 1.0, 0.0)
            c = rng.uniform(*self.contrast)
            mid = (a + b) / 2
            img = mid + c * (mask - 0.5) * (b - a)
            out.append(
                dict(img=_finish(img, rng, self.noise_std), gt_label=label,
                     img_shape=(side, side), ori_shape=(side, side)))
        return out

    def get_cat_ids(self, idx: int) -> list:
        return [int(self.get_data_info(idx)['gt_label'])]


def _shape_mask(kind: int, side: int, cy: float, cx: float, r: float,
                angle: float) -> np.ndarray:
    """A boolean mask of one of 16 shapes of radius ``r`` at (cy, cx)."""
    import cv2
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64)
    dy, dx = yy - cy, xx - cx
    ca, sa = np.cos(angle), np.sin(angle)
    u, v = dx * ca + dy * sa, -dx * sa + dy * ca  # rotated coords
    d = np.sqrt(dy**2 + dx**2)
    t = max(1.0, r * 0.35)  # stroke
    if kind == 0:
        return d <= r  # disc
    if kind == 1:
        return (d <= r) & (d >= r - t)  # ring
    if kind == 2:
        return (np.abs(u) <= r * 0.8) & (np.abs(v) <= r * 0.8)  # square
    if kind == 3:
        s = (np.abs(u) <= r * 0.85) & (np.abs(v) <= r * 0.85)
        return s & ~((np.abs(u) <= r * 0.85 - t) &
                     (np.abs(v) <= r * 0.85 - t))  # hollow square
    if kind in (4, 5):  # triangle up / down (not rotated: orientation is
        # the class)
        sign = 1 if kind == 4 else -1
        pts = np.array([[cx, cy - sign * r], [cx - r, cy + sign * r * 0.8],
                        [cx + r, cy + sign * r * 0.8]], np.int32)
        img = np.zeros((side, side), np.uint8)
        cv2.fillPoly(img, [pts], 1)
        return img > 0
    if kind == 6:
        return ((np.abs(dx) <= t / 2 + 0.5) | (np.abs(dy) <= t / 2 + 0.5)) & (
            np.maximum(np.abs(dx), np.abs(dy)) <= r)  # plus
    if kind == 7:
        p, q = (dx + dy) / np.sqrt(2), (dx - dy) / np.sqrt(2)
        return ((np.abs(p) <= t / 2 + 0.5) | (np.abs(q) <= t / 2 + 0.5)) & (
            d <= r)  # X
    if kind == 8:
        return np.abs(dx) + np.abs(dy) <= r  # diamond
    if kind == 9:
        s = np.abs(dx) + np.abs(dy)
        return (s <= r) & (s >= r - 1.4 * t)  # hollow diamond
    if kind == 10:
        return (np.abs(dy) <= t / 2 + 0.5) & (np.abs(dx) <= r)  # h bar
    if kind == 11:
        return (np.abs(dx) <= t / 2 + 0.5) & (np.abs(dy) <= r)  # v bar
    if kind == 12:  # L
        return ((np.abs(dx + r * 0.6) <= t / 2 + 0.5) & (np.abs(dy) <= r)) | (
            (np.abs(dy - r * 0.8) <= t / 2 + 0.5) & (np.abs(dx) <= r * 0.8))
    if kind == 13:  # T
        return ((np.abs(dy + r * 0.8) <= t / 2 + 0.5) & (np.abs(dx) <= r)) | (
            (np.abs(dx) <= t / 2 + 0.5) & (np.abs(dy) <= r))
    if kind == 14:
        return (d <= r) & (dy >= 0)  # half disc, flat side up
    # 15: ellipse (wide)
    return (dx / r)**2 + (dy / (r * 0.5))**2 <= 1


@DATASETS.register_module()
class Shapes16Dataset(_Synth):
    """16 shape classes on a coloured 1/f-noise background (classification).

    Shape radius 30-45% of the side, random place, rotation (where it is
    not the class), colour; the background a 3-channel 1/f noise; a
    random-coloured occluding square ``occlusion`` of the side; noise.
    """
    METAINFO = dict(classes=tuple(
        'disc ring square hollow_square tri_up tri_down plus x diamond '
        'hollow_diamond hbar vbar L T half_disc ellipse'.split()))
    _ROTATES = {2, 3}  # squares rotate a little; the others keep their pose

    def __init__(self, occlusion: float = 0.2, **kwargs) -> None:
        self.occlusion = occlusion
        super().__init__(**kwargs)

    def load_data_list(self) -> list:
        rng = self._rng()
        side = self.img_size
        out = []
        for i in range(self.num_samples):
            label = i % 16
            bg = pink_noise(rng, side, slope=rng.uniform(1.0, 2.0),
                            channels=3)
            bg = bg * rng.uniform(0.15, 0.45) + rng.uniform(0, 0.5, 3)
            r = side * rng.uniform(0.3, 0.45)
            cy, cx = rng.uniform(r * 0.8, side - r * 0.8, 2)
            angle = rng.uniform(-0.3, 0.3) if label in self._ROTATES else 0.0
            mask = _shape_mask(label, side, cy, cx, r, angle)
            img = bg.copy()
            # a colour that stands out of the background's mean
            colour = rng.uniform(0, 1, 3)
            mean = bg.reshape(-1, 3).mean(0)
            if np.abs(colour - mean).max() < 0.4:
                colour = np.where(mean < 0.5, 1.0, 0.0)
            img[mask] = colour
            if self.occlusion:
                s = max(1, int(round(side * self.occlusion)))
                y, x = rng.integers(0, side - s + 1, 2)
                img[y:y + s, x:x + s] = rng.uniform(0, 1, 3)
            out.append(
                dict(img=_finish(img, rng, self.noise_std), gt_label=label,
                     img_shape=(side, side), ori_shape=(side, side)))
        return out

    def get_cat_ids(self, idx: int) -> list:
        return [int(self.get_data_info(idx)['gt_label'])]


@DATASETS.register_module()
class ShapesSegDataset(_Synth):
    """1-3 shapes of 4 classes on a coloured 1/f background (segmentation).

    Classes: background, disc, square, triangle, plus; later shapes paint
    over earlier ones (labels too).
    """
    METAINFO = dict(
        classes=('background', 'disc', 'square', 'triangle', 'plus'),
        palette=[[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25],
                 [0, 130, 200]])
    _KINDS = (0, 2, 4, 6)

    def load_data_list(self) -> list:
        rng = self._rng()
        side = self.img_size
        out = []
        for _ in range(self.num_samples):
            bg = pink_noise(rng, side, slope=rng.uniform(1.0, 2.0),
                            channels=3)
            img = bg * rng.uniform(0.3, 0.8) + rng.uniform(0, 0.4, 3)
            seg = np.zeros((side, side), np.uint8)
            for _ in range(int(rng.integers(1, 4))):
                cls = int(rng.integers(4))
                r = side * rng.uniform(0.15, 0.3)
                cy, cx = rng.uniform(r * 0.8, side - r * 0.8, 2)
                angle = rng.uniform(-0.4, 0.4) if cls == 1 else 0.0
                mask = _shape_mask(self._KINDS[cls], side, cy, cx, r, angle)
                img[mask] = rng.uniform(0, 1, 3)
                seg[mask] = cls + 1
            out.append(
                dict(img=_finish(img, rng, self.noise_std), gt_seg_map=seg,
                     seg_fields=['gt_seg_map'], reduce_zero_label=False,
                     img_shape=(side, side), ori_shape=(side, side)))
        return out
