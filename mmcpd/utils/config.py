"""Read configs by path or by package scope (``mmpretrain::``, ``mmcpd::``)."""
import os.path as osp
from typing import Union

from mmengine.config import Config


def load_config(path: Union[str, Config]) -> Config:
    """A config from a file, or from an installed package as ``pkg::path``.

    ``Config.fromfile`` reads files only; ``mmengine.hub.get_config`` finds
    ``mmpretrain::resnet/resnet50_8xb32_in1k.py`` in the installed
    package's ``.mim/configs`` (nothing is downloaded).

    Raises:
        FileNotFoundError: Neither a file nor a config of an installed
            package.
    """
    if isinstance(path, Config):
        return path
    path = str(path)
    if osp.exists(path):
        return Config.fromfile(path)
    if '::' in path:
        from mmengine.hub import get_config
        try:
            return get_config(path)
        except (FileNotFoundError, ValueError, AssertionError) as e:
            raise FileNotFoundError(
                f'config `{path}` was not found in its package: {e}') from e
    raise FileNotFoundError(f'config `{path}` does not exist')


def input_shape(cfg: Config, size=None) -> tuple:
    """An example input shape ``(1, 3, H, W)`` for the model of ``cfg``.

    ``size`` (an int or ``(H, W)``) wins; otherwise a segmentation config's
    ``crop_size`` and 224 x 224 for anything else.
    """
    if size is None:
        size = cfg.get('crop_size', None) or 224
    if isinstance(size, int):
        size = (size, size)
    h, w = (int(s) for s in size)
    return (1, 3, h, w)
