"""Metrics and FLOPs computed without the tools' code paths.

The tools evaluate through mmengine's runner, the configs' pipelines, data
pre-processors and MMPretrain's / MMSeg's metrics, and count FLOPs through
``mmcpd.deploy.model_complexity``. These helpers take the bundled digits
straight from the dataset classes, normalise them by hand, run the model in
tensor mode and count top-1 accuracy or mIoU with numpy, and call
mmengine's FLOP counter directly: what the tools report must match.
"""
import numpy as np
import torch
import torch.nn.functional as F
from mmengine.analysis import FlopAnalyzer
from mmengine.config import Config

from mmcpd.datasets import DigitsDataset, DigitsSegDataset

#: How far below the target the share of FLOPs removed may be in mmengine's
#: count: the CPDHook reaches the target in its own cost model, which need
#: not count every op mmengine does (UNet on the canvases, CPD to 0.5: the
#: hook counted 50.17% removed, mmengine 49.97%).
TOL = 0.005
#: How far above the target it may be: the hook stops after the unit that
#: reaches the target, and one unit of the demo's small models is large
#: (8 of a UNet stage's 16 channels at 64x64: about 6% of its FLOPs).
OVERSHOOT = 0.1


def _preprocessor(cfg: Config) -> dict:
    return cfg.get('data_preprocessor', None) or cfg.model.data_preprocessor


def _inputs(cfg: Config, images) -> torch.Tensor:
    """HWC uint8 images, normalised with the config's mean and std (the
    digits are grey: the channel order does not matter)."""
    pre = _preprocessor(cfg)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    mean = torch.tensor(pre['mean']).view(1, -1, 1, 1)
    std = torch.tensor(pre['std']).view(1, -1, 1, 1)
    return (x - mean) / std


def _items(dataset):
    return [dataset.get_data_info(i) for i in range(len(dataset))]


@torch.no_grad()
def top1(model, cfg: Config, **dataset) -> float:
    """Top-1 accuracy (%) on the val digits: argmax of the logits."""
    items = _items(DigitsDataset(split='val', **dataset))
    logits = model.eval()(
        _inputs(cfg, [i['img'] for i in items]), mode='tensor')
    labels = torch.tensor([i['gt_label'] for i in items])
    return float((logits.argmax(1) == labels).float().mean()) * 100


@torch.no_grad()
def miou(model, cfg: Config, num_classes: int = 11, **dataset) -> float:
    """mIoU (%) on the val canvases: per class, pixels of the class in
    both prediction and label over pixels in either, summed over the set;
    classes in neither are left out (as MMSeg's IoUMetric does)."""
    items = _items(DigitsSegDataset(split='val', **dataset))
    x = _inputs(cfg, [i['img'] for i in items])
    logits = model.eval()(x, mode='tensor')
    logits = F.interpolate(
        logits, size=x.shape[2:], mode='bilinear', align_corners=False)
    pred = logits.argmax(1).numpy()
    label = np.stack([i['gt_seg_map'] for i in items])
    inter = np.zeros(num_classes)
    union = np.zeros(num_classes)
    for c in range(num_classes):
        inter[c] = np.sum((pred == c) & (label == c))
        union[c] = np.sum((pred == c) | (label == c))
    with np.errstate(invalid='ignore'):
        return float(np.nanmean(inter / union)) * 100


@torch.no_grad()
def flops(model, shape) -> int:
    """mmengine's FLOP count of the model in tensor mode."""

    class Tensor(torch.nn.Module):

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x, mode='tensor')

    analyzer = FlopAnalyzer(Tensor(model.eval()), (torch.zeros(shape), ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return int(analyzer.total())
