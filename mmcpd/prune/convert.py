"""From a masked training model (or checkpoint) to the physically small one.

During training, removed units are only zeroed (see :mod:`.dead`). These
functions cut them out: :func:`pruned_copy` on a model in memory, and
:func:`deploy_from_training` on any checkpoint that
:class:`~mmcpd.engine.hooks.CPDHook` saved, which carries the prune
session's state (:mod:`.session`). The result, a *deploy checkpoint*, holds
only the small model's ``state_dict`` and its spec under ``'pruned_spec'``: it
loads with ``torch.load(weights_only=True)`` and needs only mmcpd and the
original config (:func:`~mmcpd.prune.spec.apply_spec`, then
``load_state_dict``).

On files: :func:`mmcpd.apis.convert.convert_checkpoint` and
``tools/convert_checkpoint.py``.
"""
from typing import Dict, Mapping, Optional, Sequence

import torch
from torch import nn

from mmcpd.prune.session import (STATE_KEY, comb_of, is_training_checkpoint,
                                 removed_units, shrink_of, unpack_state)
from mmcpd.prune.spec import CHECKPOINT_KEY, PrunedSpec, apply_spec
from mmcpd.prune.surgery.physical import pruned_copy

__all__ = [
    'STATE_KEY', 'deploy_checkpoint', 'deploy_from_training',
    'is_training_checkpoint', 'pruned_copy', 'small_checkpoint',
    'student_state'
]


def small_checkpoint(small: nn.Module,
                     spec: PrunedSpec,
                     meta: Optional[dict] = None) -> dict:
    """The deploy checkpoint of a physically pruned model and its spec."""
    state = {k: v.detach().cpu().clone()
             for k, v in small.state_dict().items()}
    return {
        'state_dict': state,
        CHECKPOINT_KEY: spec.to_dict(),
        'meta': dict(meta or {}),
    }


def deploy_checkpoint(model: nn.Module,
                      comb_result,
                      removed: Mapping[int, Sequence[int]],
                      meta: Optional[dict] = None) -> dict:
    """The deploy checkpoint of a masked model: small weights and spec."""
    small, spec = pruned_copy(model, comb_result, removed)
    return small_checkpoint(small, spec, meta)


def student_state(checkpoint: Mapping, prefix: str) -> Dict[str, torch.Tensor]:
    """The student's part of a training checkpoint's ``state_dict``."""
    state = checkpoint['state_dict']
    if not prefix:
        return dict(state)
    return {
        k[len(prefix):]: v
        for k, v in state.items() if k.startswith(prefix)
    }


def deploy_from_training(model: nn.Module, checkpoint: Mapping) -> dict:
    """The deploy checkpoint of a CPDHook training checkpoint, in memory.

    Training checkpoints of ``shrink='mask'`` runs hold the full-size
    (masked) weights, the hook state under ``'cpd_hook'`` and, under
    ``'pruned_spec'``, the spec that the cut-out model *would* have: do not
    apply that spec before loading their ``state_dict``; convert them with
    this function instead. Those of ``shrink='physical'`` runs hold the cut
    weights and their spec, applied here before loading.

    Args:
        model (nn.Module): An unpruned model of the config: the whole
            trained model (e.g. a distillation wrapper) or only the
            student. Its weights are overwritten.
        checkpoint (Mapping): The loaded training checkpoint.

    Returns:
        dict: ``{'state_dict', 'pruned_spec', 'meta'}`` of the small
        student.

    Raises:
        KeyError: The checkpoint was not saved by a run with CPDHook.
    """
    if not is_training_checkpoint(checkpoint):
        raise KeyError(f'the checkpoint has no `{STATE_KEY}` state: was it '
                       'saved by a run with CPDHook?')
    state, prefix = unpack_state(checkpoint[STATE_KEY])
    if prefix:
        try:
            model = model.get_submodule(prefix.rstrip('.'))
        except AttributeError:  # the student itself was given
            pass
    meta = dict(iter=checkpoint.get('meta', {}).get('iter'))
    if shrink_of(state) == 'physical':
        # the weights are the cut student's: resize, then load
        spec = PrunedSpec.from_dict(checkpoint[CHECKPOINT_KEY])
        apply_spec(model, spec)
        model.load_state_dict(student_state(checkpoint, prefix))
        return small_checkpoint(model, spec, meta)
    model.load_state_dict(student_state(checkpoint, prefix))
    return deploy_checkpoint(model, comb_of(state), removed_units(state),
                             meta)
