"""Read configs by path or by package scope (``mmpretrain::``, ``mmcpd::``)."""
import os.path as osp
from typing import Union

from mmengine.config import Config


def resolve_config_path(path: str) -> str:
    """A config path, with ``package::rel/path.py`` resolved.

    ``mmpretrain::resnet/resnet18_8xb32_in1k.py`` becomes the file in the
    installed package's ``.mim/configs`` (``configs`` next to the package
    for editable installs), as ``_base_`` entries resolve; nothing is
    downloaded or installed.

    Raises:
        FileNotFoundError: The file does not exist.
    """
    path = str(path)
    if '::' not in path or osp.isfile(path):
        if not osp.isfile(path):
            raise FileNotFoundError(f'config `{path}` does not exist')
        return path
    import importlib.util

    from mmengine.utils import is_installed
    from mmengine.utils.package_utils import get_installed_path

    package, rel = path.split('::', 1)
    if not is_installed(package):
        raise FileNotFoundError(f'config `{path}`: package `{package}` is '
                                'not installed')
    roots = [get_installed_path(package)]
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.origin:
        roots.append(osp.dirname(spec.origin))
    for root in roots:
        for candidate in (osp.join(root, '.mim', 'configs', rel),
                          osp.join(osp.dirname(root), 'configs', rel)):
            if osp.isfile(candidate):
                return candidate
    raise FileNotFoundError(f'config `{path}` does not exist in {roots[0]}')


def load_config(path: Union[str, Config]) -> Config:
    """A config from a file, or from an installed package as ``pkg::path``
    (see :func:`resolve_config_path`)."""
    if isinstance(path, Config):
        return path
    return Config.fromfile(resolve_config_path(path))


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
