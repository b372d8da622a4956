"""Read configs by path or by package scope (``mmpretrain::``, ``mmcpd::``)."""
import os.path as osp
from typing import Optional, Sequence, Tuple, Union

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


def _size(value) -> Optional[Tuple[int, int]]:
    """``(H, W)`` from an int or a pair of positive ints, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value > 0:
        return (value, value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0
            for v in value):
        return (int(value[0]), int(value[1]))
    return None


#: Transforms whose argument fixes the size of the images a model sees:
#: type (last part of its name) -> argument.
_SIZE_ARGS = {
    'CenterCrop': 'crop_size',
    'Pad': 'size',  # RTMDet's and YOLOX's fixed test pads
    'RandomCrop': 'crop_size',
    'RandomResizedCrop': 'scale',
    'Resize': 'scale',
}
#: Those of them whose pair is ``(width, height)`` (mmcv's convention).
_WIDTH_FIRST = ('Pad', 'Resize')


def _pipeline(cfg: Config, split: str) -> Sequence:
    loader = cfg.get(f'{split}_dataloader', None) or {}
    dataset = loader.get('dataset', None) or {}
    # wrappers such as RepeatDataset / ConcatDataset keep theirs inside
    while 'pipeline' not in dataset and isinstance(
            dataset.get('dataset', None), dict):
        dataset = dataset['dataset']
    pipeline = dataset.get('pipeline', None)
    if pipeline is None:
        pipeline = cfg.get(f'{split}_pipeline', None)
    return pipeline or []


def _pipeline_size(cfg: Config, split: str):
    for i, transform in enumerate(_pipeline(cfg, split)):
        if not isinstance(transform, dict):
            continue
        kind = str(getattr(transform.get('type'), '__name__',
                           transform.get('type'))).rpartition('.')[2]
        arg = _SIZE_ARGS.get(kind)
        if arg is None or (kind == 'Resize'
                           and transform.get('keep_ratio', False)):
            continue  # a kept aspect ratio gives no fixed size
        size = _size(transform.get(arg))
        if size is not None and kind in _WIDTH_FIRST:
            size = size[::-1]
        if size is not None:
            return size, f'`{split}_pipeline[{i}]` ({kind}.{arg})'
    return None


def example_input_shape(cfg: Config) -> Tuple[Tuple[int, ...], str]:
    """The input shape ``(1, 3, H, W)`` that the config's model sees, and
    where it was read.

    In this order: the pre-processor's fixed ``size`` (MMSeg pads or crops
    every batch to it: the crop size), a top-level ``crop_size``, a
    cropping or fixed resizing transform of the test pipeline (MMPretrain's
    ``CenterCrop``), then of the train pipeline (``RandomResizedCrop``,
    ``RandomCrop``); else 224 x 224.

    Args:
        cfg (Config): A training config.

    Returns:
        tuple: The shape, and a phrase naming its source, e.g.
        ``'`model.data_preprocessor.size`'``.
    """
    candidates = []
    model = cfg.get('model', None) or {}
    for owner, name in ((model, 'model.data_preprocessor'),
                        (model.get('student', None) or {},
                         'model.student.data_preprocessor'),
                        (cfg, 'data_preprocessor')):
        preprocessor = owner.get('data_preprocessor', None) or {}
        candidates.append((preprocessor.get('size', None), f'`{name}.size`'))
    candidates.append((cfg.get('crop_size', None), '`crop_size`'))
    for value, source in candidates:
        size = _size(value)
        if size is not None:
            return (1, 3) + size, source
    for split in ('test', 'val', 'train'):
        found = _pipeline_size(cfg, split)
        if found is not None:
            return (1, 3) + found[0], found[1]
    return (1, 3, 224, 224), 'the default (no size in the config)'


def input_channels(cfg: Config) -> int:
    """Image channels the model takes: as many as the data pre-processor
    has ``mean`` values (LeNet on MNIST: 1), else 3."""
    model = cfg.get('model', None) or {}
    for owner in (model, model.get('student', None) or {}, cfg):
        mean = (owner.get('data_preprocessor', None) or {}).get('mean')
        if mean is not None:
            return len(mean)
    return 3


def input_shape(cfg: Config, size=None) -> tuple:
    """An example input shape ``(1, C, H, W)`` for the model of ``cfg``.

    ``size`` (an int or ``(H, W)``) wins; otherwise the size the config
    gives (:func:`example_input_shape`). ``C``: :func:`input_channels`.
    """
    if size is None:
        shape = example_input_shape(cfg)[0]
        return (1, input_channels(cfg)) + tuple(shape[2:])
    if isinstance(size, int):
        size = (size, size)
    h, w = (int(s) for s in size)
    return (1, input_channels(cfg), h, w)
