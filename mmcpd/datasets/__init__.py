"""Offline demo datasets, registered in mmengine's root ``DATASETS``."""
from mmcpd.datasets.digits import DigitsDataset, load_digits_split
from mmcpd.datasets.digits_det import DigitsDetDataset
from mmcpd.datasets.digits_seg import DigitsSegDataset

__all__ = [
    'DigitsDataset', 'DigitsDetDataset', 'DigitsSegDataset',
    'load_digits_split'
]
