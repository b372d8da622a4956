"""Turn a CPDHook training checkpoint file into the small deploy checkpoint.

Command line: ``python tools/convert_checkpoint.py CONFIG CKPT OUT``.
"""
import argparse

import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from torch import nn

from mmcpd.prune.convert import (STATE_KEY, deploy_from_training,
                                 is_training_checkpoint)
from mmcpd.utils.checkpoint import load_checkpoint_file


def build_model(config):
    """Build the whole model of an OpenMMLab config (path or Config), a
    DistillWrapper included."""
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    return MODELS.build(cfg.model)


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
    ckpt = load_checkpoint_file(checkpoint)
    if not is_training_checkpoint(ckpt):
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
    deploy = convert_checkpoint(args.config, args.checkpoint, args.out)
    num = sum(v.numel() for v in deploy['state_dict'].values()
              if v.is_floating_point())
    print(f'wrote {args.out}: {num} parameters and buffers')


if __name__ == '__main__':
    main()
