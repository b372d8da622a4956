"""CPDHook training checkpoints (full-size masked weights + the hook state)
load in ``init_model`` and as a teacher checkpoint, as the pruned model the
hook deploys; damaged ones are refused with a message naming the culprit
or ``tools/convert_checkpoint.py``."""
import pytest
import torch
from torch import nn

import mmpretrain  # noqa: F401  (a hard dependency: its models)

from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

import mmcpd  # noqa: F401  (registers CPDHook, DistillWrapper)
from mmcpd.apis import init_model
from mmcpd.models import DistillWrapper
from mmcpd.utils.checkpoint import CheckpointError
from mmcpd.prune.surgery.verify import randomize_model
from ..test_engine.test_cpd_hook_mmpretrain import (
    MODEL,
    runner_kwargs)

SCOPED = dict(MODEL, type='mmpretrain.ImageClassifier')
X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))


def _build():
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    return MODELS.build(MODEL)


def _logits(model):
    model.eval()
    with torch.no_grad():
        return model(X, mode='tensor')


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """ResNet-18 from random weights (BN statistics too), trained 8 iters
    with CPDHook pruning twice: the config, the training checkpoint and the
    deploy checkpoint that the hook wrote."""
    work = tmp_path_factory.mktemp('cpd')
    init = work / 'random.pth'
    torch.save({'state_dict': randomize_model(_build(), seed=1).state_dict()},
               init)
    # masks: the full-size weights these tests load and damage
    hook = dict(type='CPDHook', interval=2, target=0.3, num_steps=2,
                input_shape=(1, 3, 32, 32), shrink='mask')
    kwargs = runner_kwargs(work, hook, max_iters=8)
    kwargs['optim_wrapper'] = dict(optimizer=dict(type='SGD', lr=1e-3))
    Runner(model=MODEL, load_from=str(init), **kwargs).train()
    cfg = work / 'cfg.py'
    Config(dict(model=MODEL, default_scope='mmpretrain')).dump(str(cfg))
    return dict(
        cfg=str(cfg),
        train=str(work / 'iter_8.pth'),
        deploy=str(work / 'pruned_deploy.pth'),
        work=work)


def _masked(path):
    """The full-size masked model of a training checkpoint."""
    model = _build()
    model.load_state_dict(torch.load(path, weights_only=True)['state_dict'])
    return model


def _wrapper_checkpoint(trained):
    """What a DistillWrapper run saves: student. / teacher. tensors."""
    ckpt = torch.load(trained['train'], weights_only=True)
    state = ckpt['state_dict']
    ckpt['state_dict'] = {f'student.{k}': v for k, v in state.items()}
    ckpt['state_dict'].update({f'teacher.{k}': v for k, v in state.items()})
    ckpt['cpd_hook']['student_prefix'] = 'student.'
    path = trained['work'] / 'wrapper_iter_8.pth'
    torch.save(ckpt, path)
    return str(path)


@pytest.mark.parametrize('kind', ['plain', 'wrapper'])
def test_training_checkpoint_loads_as_the_deploy_model(trained, kind):
    path = trained['train'] if kind == 'plain' else _wrapper_checkpoint(
        trained)
    model = init_model(trained['cfg'], path)
    deployed = init_model(trained['cfg'], trained['deploy'])
    ours, theirs = model.state_dict(), deployed.state_dict()
    assert ours.keys() == theirs.keys()
    for name in ours:  # the same small tensors, bit for bit
        assert torch.equal(ours[name], theirs[name]), name
    full = sum(p.numel() for p in _build().parameters())
    assert sum(p.numel() for p in model.parameters()) < 0.8 * full
    torch.testing.assert_close(_logits(model), _logits(deployed))
    torch.testing.assert_close(
        _logits(model), _logits(_masked(trained['train'])), rtol=1e-4,
        atol=1e-4)


def test_training_checkpoint_as_teacher(trained):
    wrapper = DistillWrapper(SCOPED, teacher_checkpoint=trained['train'])
    deployed = init_model(trained['cfg'], trained['deploy'])
    torch.testing.assert_close(_logits(wrapper.teacher), _logits(deployed))
    shapes = {k: v.shape for k, v in wrapper.teacher.state_dict().items()}
    assert shapes == {k: v.shape for k, v in deployed.state_dict().items()}
    numel = sum(p.numel() for p in wrapper.teacher.parameters())
    assert numel < sum(p.numel() for p in wrapper.student.parameters())


def _damaged(trained, name, edit):
    ckpt = torch.load(trained['train'], weights_only=True)
    edit(ckpt)
    path = trained['work'] / name
    torch.save(ckpt, path)
    return str(path)


def test_training_checkpoint_that_cannot_be_cut_names_the_tool(trained):
    def bad_removed(ckpt):
        ckpt['cpd_hook']['session']['pruner']['removed'] = {'12345': [0]}

    path = _damaged(trained, 'bad_removed.pth', bad_removed)
    for load in (lambda: init_model(trained['cfg'], path),
                 lambda: DistillWrapper(SCOPED, teacher_checkpoint=path)):
        with pytest.raises(CheckpointError) as info:
            load()
        message = str(info.value)
        assert 'bad_removed.pth' in message
        assert 'tools/convert_checkpoint.py' in message
        assert 'group 12345' in message


def test_full_size_weights_without_hook_state_name_the_tool(trained):
    path = _damaged(trained, 'no_state.pth',
                    lambda ckpt: ckpt.pop('cpd_hook'))
    with pytest.raises(CheckpointError) as info:
        init_model(trained['cfg'], path)
    message = str(info.value)
    assert 'no_state.pth' in message and 'full-size' in message
    assert 'tools/convert_checkpoint.py' in message


def test_edited_spec_in_deploy_checkpoint_is_refused(trained):
    ckpt = torch.load(trained['deploy'], weights_only=True)
    spec = ckpt['pruned_spec']
    modules = dict(_build().named_modules())
    # a conv layer (blocks' own copies, e.g. BasicBlock.out_channels, are
    # not read by their forward)
    conv = next(m for m, a in sorted(spec['attrs'].items())
                if 'out_channels' in a and isinstance(modules[m], nn.Conv2d)
                and a['out_channels'] < modules[m].out_channels)
    kept = spec['attrs'][conv]['out_channels']
    spec['attrs'][conv]['out_channels'] = kept + 1
    path = trained['work'] / 'edited.pth'
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError) as info:
        init_model(trained['cfg'], str(path))
    message = str(info.value)
    assert f'`{conv}.out_channels` is {kept + 1}' in message
    assert f'give {kept}' in message and 'edited.pth' in message
