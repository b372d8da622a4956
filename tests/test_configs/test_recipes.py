"""The paper's recipes, each run by the runner its config names.

Every recipe is built by ``Runner.from_cfg`` of its ``runner_type`` (the
``CPDRunner``) as ``tools/train.py`` builds it, and trains two iterations.
Only what cannot run here is replaced: the data (ImageNet / ADE20K become
four of the bundled digits, 32x32 images or 64x64 canvases, two per batch;
segmentation pads to 64 instead of 512), the length (one epoch or two
iterations, no training checkpoint), the zoo checkpoint (``load_from``: no
download) and the work dir. The CPDHook that the config produces is found
among the runner's hooks, whatever the config calls it, and given the same
tiny input and one prune step after the first iteration; its target,
metric, importance and guards stay the recipe's.
"""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import RUNNERS

from mmcpd.engine.hooks import CPDHook
from mmcpd.models import DistillWrapper

CONFIGS = osp.join(osp.dirname(osp.dirname(osp.dirname(__file__))), 'configs')
RECIPES = sorted(glob.glob(osp.join(CONFIGS, 'recipes', '*.py')))
CLS_SIZE, SEG_SIZE = 32, 64


def _tiny_data(cfg: Config) -> None:
    """Four bundled digits (train and val), two per batch, in place of the
    recipe's datasets; the samplers stay the recipe's."""
    seg = cfg.default_scope == 'mmseg'
    for loader, split in (('train_dataloader', 'train'),
                          ('val_dataloader', 'val')):
        if seg:
            dataset = dict(
                type='DigitsSegDataset',
                split=split,
                num_samples=4,
                canvas_size=SEG_SIZE,
                pipeline=[dict(type='PackSegInputs')])
        else:
            dataset = dict(
                type='DigitsDataset',
                split=split,
                img_size=CLS_SIZE,
                indices=4,
                pipeline=[dict(type='PackInputs')])
        cfg[loader].update(
            batch_size=2,
            num_workers=0,
            persistent_workers=False,
            dataset=dataset)
    if seg:  # pad to the tiny canvases, not to the recipe's 512x512 crops
        for holder in (cfg, cfg.model):
            if holder.get('data_preprocessor'):
                holder.data_preprocessor.size = (SEG_SIZE, SEG_SIZE)


def _short(cfg: Config) -> None:
    """Two iterations: one epoch of the four images, or two iterations;
    no training checkpoint (CPDHook's checkpoints are tested with
    ``tests/test_engine``), the small model is still written at the end."""
    if cfg.train_cfg.get('by_epoch', False) or 'max_epochs' in cfg.train_cfg:
        cfg.train_cfg.max_epochs = 1
    else:
        cfg.train_cfg.max_iters = 2
    cfg.default_hooks.checkpoint.update(interval=1000, save_last=False)


class _FirstStudent(Hook):
    """Keeps the student's weights as the first iteration starts."""
    priority = 'VERY_HIGH'

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == 0:
            student = runner.model.student
            self.state = {
                k: v.clone()
                for k, v in student.state_dict().items()
                if v.is_floating_point()
            }


def _runner(path: str, work_dir: str):
    cfg = Config.fromfile(path)
    cfg.load_from = None  # the zoo checkpoint is a download
    cfg.work_dir = work_dir
    if cfg.get('visualizer', None) is not None:
        # a named global instance: unnamed, each runner gets its own
        cfg.visualizer.pop('name', None)
    _tiny_data(cfg)
    _short(cfg)
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else None
    return cfg, runner


def test_all_recipes_are_tested():
    names = {osp.basename(p) for p in RECIPES}
    for family in ('resnet50', 'resnext50', 'mobilenet-v2', 'deit-small',
                   'segformer', 'vit_deit-s16_upernet'):
        assert any(family in n for n in names), \
            f'no recipe for {family} in {sorted(names)}'


@pytest.mark.parametrize('path', RECIPES, ids=osp.basename)
def test_recipe_trains_two_iterations_and_prunes(path, tmp_path):
    # the recipe as a user runs it: a zoo checkpoint to start from
    with open(path) as f:
        assert 'https://download.openmmlab.com/' in f.read()
    cfg, runner = _runner(path, str(tmp_path))
    assert runner is not None, 'the recipe names no `runner_type`'
    model = runner.model
    assert isinstance(model, DistillWrapper)
    hooks = [h for h in runner.hooks if isinstance(h, CPDHook)]
    assert len(hooks) == 1, [type(h).__name__ for h in runner.hooks]
    hook = hooks[0]
    target = hook.settings.target
    assert 0 < target < 1
    size = SEG_SIZE if cfg.default_scope == 'mmseg' else CLS_SIZE
    hook.input_shape = (1, 3, size, size)
    hook.session.schedule_args.update(interval=1, end=None, num_steps=1)
    first = _FirstStudent()
    runner.register_hook(first)

    runner.train()

    assert runner.iter == 2
    # one prune step, after the first iteration, to the recipe's target
    assert [r['iter'] for r in hook.session.history] == [0, 1]
    assert hook.session.history[-1]['sparsity'] >= target
    assert hook.session.removed
    # the losses of the last iteration: the task's and the recipe's
    # distillation term, finite
    scalars = runner.message_hub.log_scalars
    terms = [term.key for term in model.terms]
    task = 'decode.loss_ce' if cfg.default_scope == 'mmseg' else 'loss_task'
    for key in ['loss', task] + terms:
        assert f'train/{key}' in scalars, sorted(scalars)
        assert torch.isfinite(
            torch.as_tensor(scalars[f'train/{key}'].current()))
    # the teacher is the student as loaded, frozen and out of the optimizer
    teacher = model.teacher.state_dict()
    assert all(torch.equal(teacher[k], v) for k, v in first.state.items())
    student = model.student.state_dict()
    assert not all(torch.equal(student[k], v) for k, v in first.state.items())
    assert not any(p.requires_grad for p in model.teacher.parameters())
    in_optim = {
        id(p)
        for group in runner.optim_wrapper.optimizer.param_groups
        for p in group['params']
    }
    assert not in_optim & {id(p) for p in model.teacher.parameters()}
    # the small model is written at the end of training
    if hook.deploy_file:
        deploy = torch.load(
            osp.join(str(tmp_path), hook.deploy_file),
            map_location='cpu',
            weights_only=False)
        # the teacher: the student as loaded, unpruned; the student was
        # cut during training (shrink='physical') and is the deploy model
        full = sum(v.numel() for v in teacher.values())
        small = sum(v.numel() for v in deploy['state_dict'].values())
        assert small < full
        assert small == sum(v.numel() for v in student.values())
