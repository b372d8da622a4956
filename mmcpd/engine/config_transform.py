"""Turn the CPD fields of an inherited config into a wrapper and a hook.

A CPD base config (``configs/_base_/cpd_kd.py``, ``cpd_cwd.py``) cannot
name the model or the hooks of the config that inherits it: mmengine merges
``_base_`` files key by key, refuses a key that two bases define, and the
user's ``model`` and ``custom_hooks`` come from another base. So the base
config declares *what* to do in two dict fields, ``distill`` and ``cpd``
(:mod:`mmcpd.engine.cpd_settings`), and sets ``runner_type`` to
:class:`~mmcpd.engine.cpd_runner.CPDRunner`, which wraps ``cfg.model`` into a
:class:`~mmcpd.models.DistillWrapper` and appends the ``CPDHook`` before
the runner is built (:func:`transform_config`). Any OpenMMLab
``tools/train.py`` and ``tools/test.py`` builds runners through
``runner_type``, so inheriting the base config is all a user does::

    _base_ = ['mmpretrain::resnet/resnet50_8xb32_in1k.py',
              'mmcpd::_base_/cpd_kd.py']

The ``distill`` field maps one to one onto the DistillWrapper's arguments
other than ``student``::

    distill = dict(
        distill_losses=[dict(type='KDLoss', tau=1.0, loss_weight=1.0)],
        keep_task_loss=True,       # optional
        train_teacher=False,       # optional: fine-tune it alongside
        teacher=None,              # optional: another model ...
        teacher_checkpoint=None)   # ... and its weights
"""
import copy
from typing import Iterable, List, Union

from mmengine.config import Config, ConfigDict
from mmengine.optim import OptimWrapper, OptimWrapperDict
from torch import nn

from mmcpd.models import DistillWrapper
from mmcpd.engine.cpd_fields import CPD_KEY, DISTILL_KEY
from mmcpd.engine.cpd_settings import add_cpd_hook, is_cpd_hook
from mmcpd.utils.config import _pipeline, example_input_shape

WRAPPER_TYPES = ('DistillWrapper', 'mmcpd.DistillWrapper',
                 'mmcpd.models.DistillWrapper')
_WRAPPER_ARGS = ('teacher', 'teacher_checkpoint', 'distill_losses',
                 'keep_task_loss', 'train_teacher', 'probe_shape')


def _is_wrapper(model_cfg) -> bool:
    model_type = model_cfg.get('type')
    return model_type in WRAPPER_TYPES or model_type is DistillWrapper


def wrap_for_distill(cfg: Union[Config, dict]) -> Union[Config, dict]:
    """Wrap ``cfg.model`` into a DistillWrapper as ``cfg.distill`` says.

    The config's top-level ``data_preprocessor`` (MMPretrain configs keep
    it there; the runner would hand it to the outer model) moves into the
    student, whose pre-processor the wrapper then shares. A config without
    ``distill``, or whose model already is a DistillWrapper, is returned
    unchanged.

    Args:
        cfg (Config | dict): A full training config; changed in place.

    Returns:
        Config | dict: ``cfg``.

    Raises:
        TypeError: ``distill`` is not a dict.
        KeyError: ``distill`` has a key the DistillWrapper does not take.

    Examples:
        >>> cfg = Config(dict(model=dict(type='ImageClassifier', ...),
        ...                   distill=dict(distill_losses=[
        ...                       dict(type='KDLoss', tau=1.0)])))
        >>> wrap_for_distill(cfg).model.type
        'DistillWrapper'
    """
    distill = cfg.get(DISTILL_KEY, None)
    if distill is None:
        return cfg
    if not isinstance(distill, dict):
        raise TypeError(f'`{DISTILL_KEY}` should be a dict of DistillWrapper '
                        f'arguments, but got {type(distill).__name__}')
    unknown = sorted(set(distill) - set(_WRAPPER_ARGS))
    if unknown:
        raise KeyError(f'`{DISTILL_KEY}` should only have keys in '
                       f'{_WRAPPER_ARGS}, but got {unknown}')
    model = cfg.get('model', None)
    if not isinstance(model, dict):
        raise TypeError('`model` should be a config dict to wrap for '
                        f'distillation, but got {type(model).__name__}')
    if _is_wrapper(model):
        return cfg
    student = copy.deepcopy(model)
    preprocessor = cfg.get('data_preprocessor', None)
    if preprocessor is not None:
        student.setdefault('data_preprocessor', copy.deepcopy(preprocessor))
        cfg['data_preprocessor'] = None
    wrapper = dict(type='DistillWrapper', student=student)
    wrapper.update(copy.deepcopy(dict(distill)))
    cfg['model'] = ConfigDict(wrapper) if isinstance(cfg, Config) \
        else wrapper
    return cfg


def remove_from_optimizer(optim_wrapper: Union[OptimWrapper, OptimWrapperDict],
                          params: Iterable[nn.Parameter]) -> int:
    """Take ``params`` out of every param group of the optimizer(s).

    Groups left empty are dropped. Call it before the optimizer steps or
    its schedulers are built.

    Args:
        optim_wrapper (OptimWrapper | OptimWrapperDict): Built optimizer(s).
        params (Iterable[Parameter]): The parameters to remove.

    Returns:
        int: How many parameter entries were removed.
    """
    ids = {id(p) for p in params}
    wrappers = (
        optim_wrapper.values()
        if isinstance(optim_wrapper, OptimWrapperDict) else [optim_wrapper])
    removed = 0
    for wrapper in wrappers:
        optimizer = wrapper.optimizer
        groups = []
        for group in optimizer.param_groups:
            kept = [p for p in group['params'] if id(p) not in ids]
            removed += len(group['params']) - len(kept)
            group['params'] = kept
            if kept:
                groups.append(group)
        optimizer.param_groups[:] = groups
    return removed


def transform_config(cfg: Union[Config, dict]) -> List[str]:
    """Everything :class:`~mmcpd.engine.cpd_runner.CPDRunner` does to a config
    before building.

    The ``distill`` field wraps the model (:func:`wrap_for_distill`) and the
    ``cpd`` field becomes a CPDHook appended to ``custom_hooks``
    (:func:`~mmcpd.engine.cpd_settings.add_cpd_hook`); both fields are then
    removed, so that the result (which the runner dumps into its work dir)
    is a config that this transform leaves as it is. ``cfg`` is changed in
    place.

    Args:
        cfg (Config | dict): A training config.

    Returns:
        list[str]: Lines for the log (the comb input size and its source).
    """
    notes = [cover_measuring(cfg), check_detector_size(cfg)]
    notes.append(add_cpd_hook(cfg))
    wrap_for_distill(cfg)
    # consumed: the config now holds the hook and the wrapper they became
    # (what mmengine dumps into the work dir), and applying the transform
    # again changes nothing
    for key in (CPD_KEY, DISTILL_KEY):
        cfg.pop(key, None)
    return [note for note in notes if note]


#: Keys of a model config that only MMDetection's detectors have.
_DETECTOR_KEYS = ('bbox_head', 'rpn_head', 'roi_head', 'panoptic_head')
#: Resizing transforms whose ``keep_ratio`` leaves the image size open.
_RESIZES = ('Resize', 'RandomResize', 'RandomChoiceResize', 'FixShapeResize')


def _keep_ratio_resizes(cfg) -> List[str]:
    """The pipelines' resizes that keep the aspect ratio, as
    ``'`test_pipeline[1]` (Resize, scale=(1333, 800))'``."""
    found = []
    for split in ('test', 'val', 'train'):
        for i, transform in enumerate(_pipeline(cfg, split)):
            if not isinstance(transform, dict):
                continue
            kind = str(getattr(transform.get('type'), '__name__',
                               transform.get('type'))).rpartition('.')[2]
            if kind in _RESIZES and transform.get('keep_ratio', False):
                found.append(f'`{split}_pipeline[{i}]` ({kind}, scale='
                             f"{transform.get('scale')})")
    return found


def check_detector_size(cfg: Union[Config, dict]) -> str:
    """Ask for ``cpd.input_shape`` where a detector's config gives no size.

    MMDetection's configs mostly resize with ``keep_ratio=True`` (COCO's
    ``Resize(scale=(1333, 800), keep_ratio=True)``): every image gets its
    own size, so no size can be read from them, and the 224 x 224 fallback
    of classifiers would comb a detector at a size it never sees. Where
    ``cpd.input_shape`` is set, the line for the log says that it is used
    in place of such resizes.

    Args:
        cfg (Config | dict): A training config.

    Returns:
        str: A line for the log, or ''.

    Raises:
        ValueError: The model is a detector, ``cpd`` is set without
            ``input_shape`` and the config fixes no input size; the message
            names the keep-ratio resizes and the key to set.
    """
    cpd = cfg.get(CPD_KEY, None)
    model = cfg.get('model', None) or {}
    if _is_wrapper(model):
        model = model.get('student', None) or {}
    if not isinstance(cpd, dict) or not isinstance(model, dict) or not any(
            key in model for key in _DETECTOR_KEYS):
        return ''
    resizes = _keep_ratio_resizes(cfg)
    given = cpd.get('input_shape', None)
    if given is not None:
        if not resizes:
            return ''
        return (f'CPD: {resizes[0]} keeps the aspect ratio, so the config '
                f'fixes no input size: the detector is combed at '
                f'`{CPD_KEY}.input_shape` {tuple(given)}')
    _, source = example_input_shape(cfg)
    if not source.startswith('the default'):
        return ''
    why = (f'its resizes keep the aspect ratio ({", ".join(resizes)})'
           if resizes else 'it has no fixed resize or crop')
    raise ValueError(
        f'the input size of this detector cannot be read from its config: '
        f'{why}, so images differ in size. Set the size to comb the model '
        f"at in `{CPD_KEY} = dict(input_shape=(1, 3, H, W))`, e.g. a "
        'typical image after resizing (COCO with scale=(1333, 800): '
        '(1, 3, 800, 1333))')


#: Seconds the process group waits for a rank (``env_cfg.dist_cfg.timeout``)
#: in a run that measures latency: rank 0 alone measures the latency table
#: and, at each prune step, the closed loop's candidates (minutes each)
#: while the other ranks wait in a collective.
MEASURING_TIMEOUT = 7200


def cover_measuring(cfg: Union[Config, dict]) -> str:
    """Make the process group's timeout cover rank 0's latency measurements
    when ``cpd`` steers by latency (unless the config sets one); a line
    for the log, or ''."""
    cpd = cfg.get(CPD_KEY, None)
    if not isinstance(cpd, dict) or 'latency' not in (cpd.get('metric'),
                                                      cpd.get('rank_by')):
        return ''
    env = dict(cfg.get('env_cfg', None) or {})
    dist_cfg = dict(env.get('dist_cfg', None) or {})
    if dist_cfg.get('timeout') is not None:
        return ('CPDRunner: rank 0 measures latency while the other ranks '
                f"wait, within env_cfg.dist_cfg.timeout={dist_cfg['timeout']}"
                ' s')
    dist_cfg['timeout'] = MEASURING_TIMEOUT
    env['dist_cfg'] = dist_cfg
    cfg['env_cfg'] = env
    return ('CPDRunner: rank 0 measures latency (the table, and the closed '
            'loop at each prune step) while the other ranks wait: the '
            f'process group timeout is {MEASURING_TIMEOUT} s '
            '(env_cfg.dist_cfg.timeout)')


def deploy_config(cfg: Config, spec: dict) -> Config:
    """The config that builds the pruned model of a CPD training config.

    Its ``model`` is a ``mmcpd.models.PrunedModel``: the (student) model of
    ``cfg`` resized to ``spec``; the CPD fields, the CPDHook and
    ``load_from`` are gone. With it, a deploy checkpoint is a normal
    checkpoint for MMPretrain's and MMSeg's ``init_model``, inferencers
    and tools, and for a plain mmengine ``Runner``.

    Args:
        cfg (Config): The training config, as :func:`transform_config`
            left it or not.
        spec (dict): The deploy checkpoint's ``pruned_spec``.

    Returns:
        Config: The deploy config.
    """
    cfg = copy.deepcopy(cfg)
    model = cfg.model
    if _is_wrapper(model):
        model = model.student
    else:
        preprocessor = cfg.get('data_preprocessor', None)
        if preprocessor is not None:
            model.setdefault('data_preprocessor', preprocessor)
    for key in ('runner_type', DISTILL_KEY, CPD_KEY, 'data_preprocessor'):
        cfg.pop(key, None)
    cfg.model = dict(
        type='mmcpd.models.PrunedModel',
        model=model,
        pruned_spec=spec,
        data_preprocessor=model.get('data_preprocessor', None))
    if any(key in model for key in _DETECTOR_KEYS) and isinstance(
            model.get('backbone', None), dict):
        # MMDetection's init_detector sets `model.backbone.init_cfg = None`
        # (nothing downloaded) and fails on a model without `backbone`:
        # PrunedModel passes this copy on to the detector
        cfg.model['backbone'] = copy.deepcopy(model['backbone'])
    cfg.custom_hooks = [
        h for h in cfg.get('custom_hooks', None) or [] if not is_cpd_hook(h)
    ]
    cfg.load_from = None
    cfg.resume = False
    return cfg
