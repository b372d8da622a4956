"""The paper's recipes: each loads, builds with random weights and trains.

No data or weights are downloaded: ``load_from`` is dropped, the model is
built without ``init_weights`` (so no Pretrained ``init_cfg`` is read), and
two training iterations run on a fake batch of 2 small images through the
DistillWrapper that the recipe's ``distill`` field asks for, with the
recipe's CPDHook pruning the student to its target after the first one.
"""
import glob
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub, MMLogger
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope, HOOKS, MODELS
from mmengine.structures import PixelData

from mmcpd.apis.config_transform import wrap_for_distill
from mmcpd.models import DistillWrapper

CONFIGS = osp.join(osp.dirname(osp.dirname(osp.dirname(__file__))), 'configs')
RECIPES = sorted(glob.glob(osp.join(CONFIGS, 'recipes', '*.py')))
CLS_SIZE, SEG_SIZE = 32, 64


def _load(path: str) -> Config:
    cfg = Config.fromfile(path)
    cfg.load_from = None
    return cfg


def _fake_batch(cfg: Config) -> dict:
    """Two uint8 images with labels, as a dataloader would give them."""
    gen = torch.Generator().manual_seed(0)
    if cfg.default_scope == 'mmseg':
        from mmseg.structures import SegDataSample
        samples = []
        for _ in range(2):
            sample = SegDataSample()
            label = torch.randint(
                0, 150, (1, SEG_SIZE, SEG_SIZE), generator=gen)
            sample.gt_sem_seg = PixelData(data=label)
            sample.set_metainfo(
                dict(
                    img_shape=(SEG_SIZE, SEG_SIZE),
                    ori_shape=(SEG_SIZE, SEG_SIZE),
                    pad_shape=(SEG_SIZE, SEG_SIZE)))
            samples.append(sample)
        size = SEG_SIZE
    else:
        from mmpretrain.structures import DataSample
        samples = [DataSample().set_gt_label(k) for k in (3, 7)]
        size = CLS_SIZE
    inputs = [
        torch.randint(
            0, 256, (3, size, size), generator=gen, dtype=torch.uint8)
        for _ in range(2)
    ]
    return dict(inputs=inputs, data_samples=samples)


def _build(cfg: Config) -> DistillWrapper:
    wrap_for_distill(cfg)
    if cfg.default_scope == 'mmseg':
        # pad to the tiny test size instead of the recipe's 512x512 crops
        cfg.model.student.data_preprocessor.size = (SEG_SIZE, SEG_SIZE)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return MODELS.build(cfg.model)


def test_all_recipes_are_tested():
    names = {osp.basename(p) for p in RECIPES}
    for family in ('resnet50', 'resnext50', 'mobilenet-v2', 'deit-small',
                   'segformer', 'vit_deit-s16_upernet'):
        assert any(family in n for n in names), \
            f'no recipe for {family} in {sorted(names)}'


@pytest.mark.parametrize('path', RECIPES, ids=osp.basename)
def test_recipe_trains_two_iterations(path):
    cfg = _load(path)
    # the recipe as a user runs it: zoo checkpoint, CPD runner, one CPDHook
    with open(path) as f:
        assert 'https://download.openmmlab.com/' in f.read()
    assert cfg.runner_type.endswith('CPDRunner')
    hooks = [h for h in cfg.custom_hooks if h['type'].endswith('CPDHook')]
    assert len(hooks) == 1
    # the recipe's hook, reaching its target in one step after iteration 1
    # and combing the model at the test's input size
    size = SEG_SIZE if cfg.default_scope == 'mmseg' else CLS_SIZE
    hook_cfg = dict(
        hooks[0],
        interval=1,
        end=None,
        num_steps=1,
        input_shape=(1, 3, size, size),
        plot_file=None,
        deploy_file=None)
    hook = HOOKS.build(hook_cfg)
    target = hooks[0]['target']
    assert 0 < target < 1

    model = _build(cfg)
    assert isinstance(model, DistillWrapper)
    loss_key = cfg.distill.distill_losses[0]['type'].replace('Loss',
                                                             '').lower()
    loss_key = f'loss_{loss_key}'
    # MMPretrain heads return `loss`, MMSeg decode heads `decode.loss_ce`
    task_key = 'decode.loss_ce' if cfg.default_scope == 'mmseg' else 'loss'
    model.train()
    optim = OptimWrapper(
        torch.optim.SGD([p for p in model.parameters() if p.requires_grad],
                        lr=0.01))
    student_before = {
        k: v.clone()
        for k, v in model.student.state_dict().items()
        if v.is_floating_point()
    }
    data = _fake_batch(cfg)
    runner = SimpleNamespace(
        model=model,
        optim_wrapper=optim,
        logger=MMLogger.get_current_instance(),
        message_hub=MessageHub.get_current_instance(),
        max_iters=2,
        iter=0,
        work_dir=None)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        hook.before_train(runner)
        for it in range(2):
            runner.iter = it
            hook.before_train_iter(runner, it, data)
            log_vars = model.train_step(data, optim)
            hook.after_train_iter(runner, it, data)
            assert loss_key in log_vars, sorted(log_vars)
            assert torch.isfinite(torch.as_tensor(log_vars['loss']))
            # the task loss is kept beside the distillation term
            assert task_key in log_vars, sorted(log_vars)
    # the recipe's target is reachable and was reached
    assert hook.history[-1]['sparsity'] >= target - 0.05, hook.history[-1]
    hook.after_train(runner)  # removes its optimizer hooks
    # the teacher is the student as it was before the first step, frozen
    teacher = model.teacher.state_dict()
    assert all(torch.equal(teacher[k], v) for k, v in student_before.items())
    assert not all(
        torch.equal(model.student.state_dict()[k], v)
        for k, v in student_before.items())
    assert not any(p.requires_grad for p in model.teacher.parameters())
