"""Test a checkpoint, pruned by mmcpd or not, on an MMPretrain/MMSeg config.

A checkpoint written by mmcpd after pruning carries, under the top-level key
``'pruned_spec'``, the new shapes of the pruned layers. The model that the
config builds is resized to them (:func:`mmcpd.prune.spec.apply_spec`)
before the weights are loaded, so the same config tests the unpruned and the
pruned model. The checkpoint is read once, on the CPU, safely
(``weights_only=True`` with an allow-list of mmengine types).

Examples:
    python tools/test.py configs/demo/resnet18-w16_1xb64_digits.py \\
        work_dirs/resnet18-w16_1xb64_digits/iter_300.pth
"""
import argparse
import os.path as osp
import re

from mmengine.config import DictAction
from mmengine.model import is_model_wrapper
from mmengine.runner import CheckpointLoader, Runner, load_state_dict

import mmcpd  # noqa: F401  (registers its modules and config scope)
from mmcpd.models import unwrap_student
from mmcpd.prune.convert import deploy_from_training, is_training_checkpoint
from mmcpd.prune.spec import CHECKPOINT_KEY, PrunedSpec, apply_spec
from mmcpd.utils import load_checkpoint_file, mmengine_safe_globals
from mmcpd.utils.cli import add_launcher_options, parse_launched
from mmcpd.utils.config import load_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Test a checkpoint (MMPretrain or MMSeg config)')
    parser.add_argument(
        'config', help='config file path, or `mmcpd::demo/xxx.py`')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir', help='the dir to save logs and the metrics (as json)')
    parser.add_argument(
        '--out', help='dump the predictions to this pickle file')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config: key=value pairs, e.g. '
        'test_dataloader.batch_size=8; no white space allowed')
    add_launcher_options(parser)
    return parse_launched(parser, argv)


def load_checkpoint(runner: Runner, filename: str) -> dict:
    """Load a checkpoint into the runner's model, pruned or not.

    Like :meth:`mmengine.runner.Runner.load_checkpoint` (read, then the
    hooks' ``after_load_checkpoint``, then the weights), with one step more:
    when the checkpoint has ``'pruned_spec'``, the model is first resized
    to it. Loading is strict: a tensor missing, left over or of another
    shape raises instead of leaving random weights in the model.

    Args:
        runner (Runner): A runner built with ``load_from=None``.
        filename (str): Path or URI of the checkpoint.

    Returns:
        dict: The checkpoint.
    """
    if osp.isfile(filename):
        checkpoint = load_checkpoint_file(filename, map_location='cpu')
    else:  # a URL or another backend of mmengine
        with mmengine_safe_globals():
            checkpoint = CheckpointLoader.load_checkpoint(
                filename, map_location='cpu')
    model = runner.model.module if is_model_wrapper(
        runner.model) else runner.model
    if is_training_checkpoint(checkpoint):
        # A CPDHook training checkpoint: full-size masked weights; cut the
        # student out physically, as tools/convert_checkpoint.py does.
        deploy = deploy_from_training(model, checkpoint)
        student = unwrap_student(model)
        apply_spec(student, PrunedSpec.from_dict(deploy[CHECKPOINT_KEY]))
        load_state_dict(student, deploy['state_dict'], strict=True,
                        logger=runner.logger)
        runner.logger.info(f'Load the pruned student of training checkpoint '
                           f'{filename}')
        return checkpoint
    spec = checkpoint.get(CHECKPOINT_KEY)
    if spec:
        # a pruned checkpoint holds the (student) model's weights: resize
        # it (the student of a DistillWrapper config) and load into it
        model = unwrap_student(model)
        apply_spec(model, PrunedSpec.from_dict(spec))
        runner.logger.info(
            f'Resized the model to the pruned spec in {filename} '
            f'({len(spec["shapes"])} tensors)')
    runner.call_hook('after_load_checkpoint', checkpoint=checkpoint)
    state_dict = checkpoint.get('state_dict', checkpoint)
    state_dict = {
        re.sub(r'^module\.', '', name): tensor
        for name, tensor in state_dict.items()
    }
    load_state_dict(model, state_dict, strict=True, logger=runner.logger)
    runner.logger.info(f'Load checkpoint from {filename}')
    return checkpoint


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        name = osp.splitext(osp.basename(args.config.split('::')[-1]))[0]
        cfg.work_dir = osp.join('./work_dirs', name)
    # The checkpoint is loaded below, after the model is resized to it.
    cfg.load_from = None
    cfg.resume = False
    if args.out is not None:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ValueError('`--out` should be a .pkl or .pickle file, but '
                             f'got {args.out!r}')
        evaluator = cfg.test_evaluator
        if isinstance(evaluator, dict):
            evaluator = [evaluator]
        cfg.test_evaluator = list(evaluator) + [
            dict(type='DumpResults', out_file_path=args.out)
        ]
    runner = Runner.from_cfg(cfg)
    load_checkpoint(runner, args.checkpoint)
    return runner.test()


if __name__ == '__main__':
    main()
