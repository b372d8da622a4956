"""Build a model from its config and load a (pruned) mmcpd checkpoint.

What :func:`init_model` does, in order:

1. build ``cfg.model`` in the config's ``default_scope`` (only the
   ``student`` of a ``DistillWrapper``), with SyncBN reverted to BN;
2. read the checkpoint with ``torch.load(weights_only=True)`` and the
   allow-list of :mod:`mmcpd.utils.checkpoint`;
3. cut a CPDHook *training* checkpoint (full-size masked weights plus the
   hook's state) to its deploy form, with the same code as
   ``tools/convert_checkpoint.py``;
4. resize the model to the pruned architecture when the checkpoint carries a
   spec under :data:`mmcpd.prune.spec.CHECKPOINT_KEY` (the spec is checked
   against itself and the model first);
5. keep the student's weights of a DistillWrapper checkpoint (the teacher
   and the connectors are training-time only) and load them strictly,
   naming the first tensor that does not fit.
"""
import copy
from pathlib import Path
from typing import Dict, Optional, Union

import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, DefaultScope
from torch import nn

from mmcpd.prune.convert import (STATE_KEY, deploy_from_training,
                                 is_training_checkpoint)
from mmcpd.prune.spec import CHECKPOINT_KEY, PrunedSpec, apply_spec
from mmcpd.utils.checkpoint import CheckpointError, load_checkpoint_file
from mmcpd.utils.config import resolve_config_path

__all__ = [
    'init_model', 'build_model_from_cfg', 'load_pruned_checkpoint',
    'resolve_config_path'
]

#: Prefix of the student's tensors in a DistillWrapper's state dict.
STUDENT_PREFIX = 'student.'
#: Prefix that DDP (and old mmcv runners) put in front of every name.
DDP_PREFIX = 'module.'
#: The tool that turns training checkpoints into deploy checkpoints.
CONVERT_TOOL = 'tools/convert_checkpoint.py'


def _is_distill_wrapper(model_cfg: dict) -> bool:
    model_type = model_cfg.get('type', '')
    if not isinstance(model_type, str):
        model_type = getattr(model_type, '__name__', '')
    return model_type.rpartition('.')[2] == 'DistillWrapper'


def _load_config(config: Union[str, Path, Config],
                 cfg_options: Optional[dict]) -> Config:
    if isinstance(config, (str, Path)):
        config = Config.fromfile(resolve_config_path(config))
    elif isinstance(config, Config):
        config = copy.deepcopy(config)
    else:
        raise TypeError('`config` should be a path or a Config, but got '
                        f'{type(config).__name__}')
    if cfg_options:
        config.merge_from_dict(cfg_options)
    if 'model' not in config:
        raise KeyError(f'config `{config.filename}` has no `model` field')
    return config


def build_model_from_cfg(config: Config) -> nn.Module:
    """Build the deployable model of ``config``, with random weights.

    The model is built in the config's ``default_scope`` (so that
    ``type='ImageClassifier'`` finds mmpretrain's), a ``DistillWrapper``
    contributes only its ``student``, and SyncBN layers become BN.

    Args:
        config (Config): A loaded config with a ``model`` field.

    Returns:
        nn.Module: The model, in eval mode, on the CPU.
    """
    model_cfg = copy.deepcopy(config.model)
    if _is_distill_wrapper(model_cfg):
        if 'student' not in model_cfg:
            raise KeyError('the DistillWrapper in config '
                           f'`{config.filename}` has no `student`')
        wrapper_pre = model_cfg.get('data_preprocessor')
        model_cfg = copy.deepcopy(model_cfg['student'])
        if wrapper_pre is not None:
            model_cfg.setdefault('data_preprocessor', wrapper_pre)
    # Same as mmpretrain's get_model: configs keep it at the top level.
    if config.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', config.data_preprocessor)
    scope = config.get('default_scope', None)
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(model_cfg)
    model = revert_sync_batchnorm(model)
    model.eval()
    return model


def _student_state_dict(state_dict: Dict[str, torch.Tensor],
                        prefix: str) -> Dict[str, torch.Tensor]:
    """The tensors under ``prefix``, renamed without it."""
    return {
        k[len(prefix):]: v
        for k, v in state_dict.items() if k.startswith(prefix)
    }


def _state_dict_of(checkpoint: dict, path: str) -> Dict[str, torch.Tensor]:
    state_dict = checkpoint.get('state_dict', checkpoint)
    if not isinstance(state_dict, dict) or not state_dict:
        raise CheckpointError(f'checkpoint `{path}` has no state dict')
    if all(k.startswith(DDP_PREFIX) for k in state_dict):
        state_dict = _student_state_dict(state_dict, DDP_PREFIX)
    if any(k.startswith(STUDENT_PREFIX) for k in state_dict):
        # A DistillWrapper checkpoint: drop the teacher and the connectors.
        state_dict = _student_state_dict(state_dict, STUDENT_PREFIX)
    not_tensors = [
        k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)
    ]
    if not_tensors:
        raise CheckpointError(
            f'checkpoint `{path}` has no `state_dict`, and its top level is '
            f'not one either (e.g. `{not_tensors[0]}` is a '
            f'{type(state_dict[not_tensors[0]]).__name__})')
    return state_dict


def _spec_of(checkpoint: dict) -> Optional[PrunedSpec]:
    data = checkpoint.get(CHECKPOINT_KEY)
    if not data:
        return None
    spec = PrunedSpec.from_dict(data)
    names = list(spec.shapes) + list(spec.attrs)
    if names and all(n.startswith(STUDENT_PREFIX) for n in names):
        spec = PrunedSpec(
            shapes=_student_state_dict(spec.shapes, STUDENT_PREFIX),
            attrs=_student_state_dict(spec.attrs, STUDENT_PREFIX),
            version=spec.version)
    return spec


def _check_fits(model: nn.Module, state_dict: Dict[str, torch.Tensor],
                path: str, config_name: str) -> None:
    """Raise an error naming the first tensor that does not fit."""
    expected = model.state_dict()
    for name, tensor in state_dict.items():
        if name in expected and expected[name].shape != tensor.shape:
            raise CheckpointError(
                f'checkpoint `{path}` does not fit config `{config_name}`: '
                f'`{name}` has shape {list(tensor.shape)} in the checkpoint '
                f'but {list(expected[name].shape)} in the model')
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f'{len(missing)} tensors of the model are missing '
                         f'from it, e.g. `{missing[0]}`')
        if unexpected:
            parts.append(f'{len(unexpected)} of its tensors are not in the '
                         f'model, e.g. `{unexpected[0]}`')
        raise CheckpointError(
            f'checkpoint `{path}` does not fit config `{config_name}`: ' +
            '; '.join(parts))


def _check_not_full_size(model: nn.Module, spec: PrunedSpec,
                         state_dict: Dict[str, torch.Tensor],
                         path: str) -> None:
    """Refuse full-size weights next to a spec without the hook's state."""
    current = model.state_dict()
    full = [
        n for n, shape in spec.shapes.items()
        if n in state_dict and n in current
        and list(state_dict[n].shape) != list(shape)
        and state_dict[n].shape == current[n].shape
    ]
    if full:
        name = full[0]
        raise CheckpointError(
            f'checkpoint `{path}` holds full-size weights (`{name}` has '
            f'shape {list(state_dict[name].shape)}) next to a pruned spec '
            f'that makes it {spec.shapes[name]}, but no `{STATE_KEY}` state '
            'to cut them with: load the deploy checkpoint that '
            f'`{CONVERT_TOOL}` writes from the original training '
            'checkpoint (or that CPDHook writes at the end of training)')


def _cut_training_checkpoint(model: nn.Module, checkpoint: dict, path: str,
                             config_name: str) -> dict:
    """The deploy checkpoint of a CPDHook training checkpoint."""
    try:
        return deploy_from_training(model, checkpoint)
    except (KeyError, ValueError, RuntimeError, TypeError) as err:
        raise CheckpointError(
            f'checkpoint `{path}` is a CPDHook training checkpoint '
            '(full-size masked weights), but it cannot be cut to the '
            f'pruned model of config `{config_name}`: {err}. Convert it '
            f'with `python {CONVERT_TOOL} CONFIG {path} OUT.pth` and the '
            'config it was trained with, then load OUT.pth') from err


def load_pruned_checkpoint(model: nn.Module,
                           checkpoint: Union[str, dict],
                           config_name: str = '<config>',
                           path: Optional[str] = None) -> dict:
    """Load a plain, pruned, DistillWrapper or training checkpoint.

    A CPDHook training checkpoint (full-size masked weights and the hook's
    state under ``'cpd_hook'``) is cut to its deploy form first, by
    :func:`~mmcpd.prune.convert.deploy_from_training` (what
    ``tools/convert_checkpoint.py`` runs), so ``model`` ends up the pruned
    student either way.

    Args:
        model (nn.Module): The model that the checkpoint's config builds
            (unpruned architecture, or already pruned to the same spec).
        checkpoint (str | dict): A path, or a checkpoint already read.
        config_name (str): How to name the config in error messages.
            Defaults to ``'<config>'``.
        path (str, optional): How to name the checkpoint in error messages
            when ``checkpoint`` is a dict. Defaults to None.

    Returns:
        dict: The checkpoint.

    Raises:
        FileNotFoundError: The checkpoint file does not exist.
        CheckpointError: The file is not a checkpoint, its spec does not fit
            itself or the model, its tensors do not fit the model (the
            message names the first culprit), or it holds full-size
            training weights that cannot be cut here (the message names
            ``tools/convert_checkpoint.py``).
    """
    if isinstance(checkpoint, (str, Path)):
        path = str(checkpoint)
        checkpoint = load_checkpoint_file(path)
    path = path or '<checkpoint>'
    weights = checkpoint
    if is_training_checkpoint(checkpoint):
        weights = _cut_training_checkpoint(model, checkpoint, path,
                                           config_name)
    state_dict = _state_dict_of(weights, path)
    spec = _spec_of(weights)
    if spec:
        _check_not_full_size(model, spec, state_dict, path)
        try:
            apply_spec(model, spec)
        except ValueError as err:
            raise CheckpointError(f'checkpoint `{path}` with config '
                                  f'`{config_name}`: {err}') from err
    _check_fits(model, state_dict, path, config_name)
    model.load_state_dict(state_dict, strict=True)
    return checkpoint


def init_model(config: Union[str, Path, Config],
               checkpoint: Optional[str] = None,
               device: Union[str, torch.device] = 'cpu',
               cfg_options: Optional[dict] = None) -> nn.Module:
    """Build a model from a config and load a (pruned) checkpoint.

    Works like ``mmpretrain.apis.init_model`` and ``mmseg.apis.init_model``,
    and also for the checkpoints mmcpd writes: a pruned one is rebuilt at
    its pruned widths from the spec it carries, a ``DistillWrapper`` one
    yields the student only, and a CPDHook training checkpoint (full-size
    masked weights) yields the pruned student, cut as
    ``tools/convert_checkpoint.py`` cuts it.

    Args:
        config (str | Path | Config): The config of the original (unpruned)
            model, or of the DistillWrapper around it; ``package::path``
            names a config of an installed package.
        checkpoint (str, optional): Checkpoint path. None keeps random
            weights. Defaults to None.
        device (str | torch.device): Where to put the model. Defaults to
            ``'cpu'``.
        cfg_options (dict, optional): Overrides merged into the config.
            Defaults to None.

    Returns:
        nn.Module: The model in eval mode, with ``cfg`` (the config) and
        ``dataset_meta`` (from the checkpoint's meta, if any) attributes.

    Raises:
        FileNotFoundError: ``checkpoint`` does not exist.
        CheckpointError: ``checkpoint`` is not a checkpoint, or does not fit
            the config (the message names the first mismatching tensor with
            both shapes).

    Examples:
        >>> model = init_model('configs/resnet18_cpd.py', 'pruned.pth')
        >>> logits = model(torch.rand(1, 3, 224, 224), mode='tensor')
    """
    config = _load_config(config, cfg_options)
    model = build_model_from_cfg(config)
    if checkpoint is not None:
        ckpt = load_pruned_checkpoint(
            model, str(checkpoint), config_name=str(config.filename))
        meta = ckpt.get('meta') or {}
        if isinstance(meta, dict) and 'dataset_meta' in meta:
            model.dataset_meta = meta['dataset_meta']
        # A runner given this model must not re-initialise the weights.
        model._is_init = True
    model.cfg = config
    model.to(device)
    model.eval()
    return model
