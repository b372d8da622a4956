"""From a masked training model (or checkpoint) to the physically small one.

During training, removed units are only zeroed (see :mod:`.dead`). These
functions cut them out: :func:`pruned_copy` on a model in memory, and
:func:`convert_checkpoint` on any checkpoint that :class:`~mmcpd.hooks.CPDHook`
saved, which carries the comb result and the removed units under
``'cpd_hook'``. The result, a *deploy checkpoint*, holds only the small
model's ``state_dict`` and its spec under ``'pruned_spec'``: it loads with
``torch.load(weights_only=True)`` and needs only mmcpd and the original
config (:func:`~mmcpd.prune.spec.apply_spec`, then ``load_state_dict``).

Command line::

    python -m mmcpd.prune.convert CONFIG TRAIN_CHECKPOINT OUT.pth
"""
import argparse
import copy
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from .spec import CHECKPOINT_KEY, PrunedSpec

#: Key of the hook's state in training checkpoints.
STATE_KEY = 'cpd_hook'


def removed_from_state(state: Mapping) -> Dict[int, List[int]]:
    """Removed units by (int) group id, from a hook state dict."""
    return {int(k): [int(u) for u in v] for k, v in state['removed'].items()}


def comb_from_state(state: Mapping):
    """The :class:`~mmcpd.comb.CombResult` saved in a hook state dict."""
    from mmcpd.comb import CombResult
    return CombResult.from_dict(state['comb'])


def pruned_copy(model: nn.Module, comb_result,
                removed: Mapping[int, Sequence[int]]
                ) -> Tuple[nn.Module, PrunedSpec]:
    """A physically pruned copy of ``model``; ``model`` is left as it is.

    Args:
        model (nn.Module): The masked model.
        comb_result (CombResult): Its comb result.
        removed (Mapping[int, Sequence[int]]): Removed units by group id.

    Returns:
        tuple[nn.Module, PrunedSpec]: The small model and its spec.
    """
    from .physical import prune_units
    small = copy.deepcopy(model)
    removed = {int(k): list(v) for k, v in removed.items() if len(v)}
    spec = prune_units(small, comb_result, removed) if removed \
        else PrunedSpec()
    return small, spec


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


def student_state(checkpoint: Mapping, prefix: str) -> Dict[str,
                                                          torch.Tensor]:
    """The student's part of a training checkpoint's ``state_dict``."""
    state = checkpoint['state_dict']
    if not prefix:
        return dict(state)
    return {
        k[len(prefix):]: v
        for k, v in state.items() if k.startswith(prefix)
    }


def build_model(config):
    """Build the model of an OpenMMLab config (path or Config)."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    return MODELS.build(cfg.model)


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
    if STATE_KEY not in checkpoint:
        raise KeyError(f'the checkpoint has no `{STATE_KEY}` state: was it '
                       'saved by a run with CPDHook?')
    state = checkpoint[STATE_KEY]
    prefix = state.get('student_prefix', '')
    if prefix:
        try:
            model = model.get_submodule(prefix.rstrip('.'))
        except AttributeError:  # the student itself was given
            pass
    meta = dict(iter=checkpoint.get('meta', {}).get('iter'))
    if state.get('shrink', 'mask') == 'physical':
        # the weights are the cut student's: resize, then load
        from .spec import apply_spec
        spec = PrunedSpec.from_dict(checkpoint[CHECKPOINT_KEY])
        apply_spec(model, spec)
        model.load_state_dict(student_state(checkpoint, prefix))
        return small_checkpoint(model, spec, meta)
    model.load_state_dict(student_state(checkpoint, prefix))
    return deploy_checkpoint(model, comb_from_state(state),
                             removed_from_state(state), meta)


def convert_checkpoint(config, checkpoint: str, out: str) -> dict:
    """Turn a CPDHook training checkpoint file into a deploy checkpoint.

    Args:
        config (str | Config | nn.Module): The training config, or the
            unpruned model it builds (see :func:`deploy_from_training`).
        checkpoint (str): A checkpoint saved during or after CPD training.
        out (str): Where to write the deploy checkpoint.

    Returns:
        dict: The deploy checkpoint that was written.

    Raises:
        KeyError: ``checkpoint`` was not saved by a run with CPDHook.
    """
    from mmcpd.utils.checkpoint import load_checkpoint_file
    ckpt = load_checkpoint_file(checkpoint)
    if STATE_KEY not in ckpt:
        raise KeyError(f'checkpoint `{checkpoint}` has no `{STATE_KEY}` '
                       'state: was it saved by a run with CPDHook?')
    model = config if isinstance(config, nn.Module) else build_model(config)
    deploy = deploy_from_training(model, ckpt)
    deploy['meta']['source'] = str(checkpoint)
    torch.save(deploy, out)
    return deploy


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description='Turn a CPDHook training checkpoint into the small '
        'deploy checkpoint (weights of the pruned model + its spec).')
    parser.add_argument('config', help='training config file')
    parser.add_argument('checkpoint', help='training checkpoint')
    parser.add_argument('out', help='deploy checkpoint to write')
    args = parser.parse_args(argv)
    import mmcpd  # noqa: F401  (registers mmcpd's modules)
    deploy = convert_checkpoint(args.config, args.checkpoint, args.out)
    num = sum(v.numel() for v in deploy['state_dict'].values()
              if v.is_floating_point())
    print(f'wrote {args.out}: {num} parameters and buffers')


if __name__ == '__main__':
    main()
