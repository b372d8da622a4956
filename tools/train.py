"""Train a model from an MMPretrain or MMSegmentation config, with mmcpd.

One script serves both codebases: the registry scope comes from the
config's ``default_scope``. mmcpd is imported first, so that its hooks,
models and datasets are registered and ``mmcpd::`` config paths resolve.

Examples:
    python tools/train.py configs/demo/resnet18-w16_1xb64_digits.py
    python tools/train.py mmcpd::demo/unet-s4-d8_fcn_1xb16_digits-seg.py \\
        --work-dir work_dirs/seg --cfg-options train_cfg.max_iters=100
    bash tools/dist_train.sh CONFIG 8
"""
import argparse
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import mmcpd  # noqa: F401  (registers its modules and config scope)
from mmcpd.utils import add_mmengine_safe_globals
from mmcpd.utils.cli import add_launcher_options, parse_launched
from mmcpd.utils.config import load_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train a model (MMPretrain or MMSeg config) with mmcpd')
    parser.add_argument(
        'config', help='config file path, or `mmcpd::demo/xxx.py`')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from this checkpoint, or with no path, from the latest '
        'checkpoint in the work directory')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='enable automatic mixed precision training (needs a GPU)')
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='do not evaluate checkpoints during training')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config: key=value pairs, e.g. '
        'train_cfg.max_iters=100 or key="[a,b]"; no white space allowed')
    add_launcher_options(parser)
    return parse_launched(parser, argv)


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command line to the config."""
    cfg.launcher = args.launcher
    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None
    # work_dir: command line > config > ./work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        name = osp.splitext(osp.basename(args.config.split('::')[-1]))[0]
        cfg.work_dir = osp.join('./work_dirs', name)
    if args.amp:
        if cfg.optim_wrapper.get('type', 'OptimWrapper') != 'OptimWrapper':
            raise ValueError(
                '`--amp` replaces `optim_wrapper.type` (OptimWrapper) by '
                "'AmpOptimWrapper', but the config has "
                f'{cfg.optim_wrapper.type!r}')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    return cfg


def main(argv=None):
    args = parse_args(argv)
    # torch.load's default weights_only=True refuses the message hub and
    # scheduler states in mmengine's checkpoints: allow exactly those types.
    add_mmengine_safe_globals()
    cfg = merge_args(load_config(args.config), args)
    if 'runner_type' in cfg:
        runner = RUNNERS.build(cfg)
    else:
        runner = Runner.from_cfg(cfg)
    runner.train()


if __name__ == '__main__':
    main()
