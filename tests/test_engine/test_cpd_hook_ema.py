"""CPDHook next to mmengine's EMAHook: the EMA copies of removed units stay
exactly zero, and the model cut from the EMA weights (the hook's deploy
checkpoint, or a converted training checkpoint) computes what the masked
EMA model computes."""
import pytest
import torch

import mmpretrain  # noqa: F401  (a hard dependency: its models)

from mmengine.config import Config
from mmengine.hooks import EMAHook
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

import mmcpd  # noqa: F401  (registers CPDHook)
from mmcpd.engine.hooks import CPDHook
from mmcpd.apis.convert import convert_checkpoint
from mmcpd.prune.surgery.mask import exact_norms
from mmcpd.prune.spec import PrunedSpec, apply_spec
from mmcpd.utils.config import resolve_config_path
from mmcpd.prune.surgery.verify import randomize_model
from .test_cpd_hook_mmpretrain import MODEL, runner_kwargs

#: A small ConvNeXt (LayerNorm, depthwise convs, layer scale).
CONVNEXT = dict(
    type='ImageClassifier',
    data_preprocessor=MODEL['data_preprocessor'],
    backbone=dict(
        type='ConvNeXt',
        arch=dict(depths=[1, 1, 2, 1], channels=[16, 32, 48, 64])),
    head=dict(
        type='LinearClsHead',
        num_classes=4,
        in_channels=64,
        loss=dict(type='CrossEntropyLoss')))


def _convnext_ema() -> dict:
    """The EMAHook of MMPretrain's ConvNeXt-T config, as it is."""
    cfg = Config.fromfile(
        resolve_config_path('mmpretrain::convnext/'
                            'convnext-tiny_32xb128_in1k.py'))
    hooks = [h for h in cfg.custom_hooks if h['type'] == 'EMAHook']
    assert len(hooks) == 1
    return dict(hooks[0])


CASES = {
    # ConvNeXt-T's EMAHook (ABOVE_NORMAL: it updates before CPDHook prunes)
    'convnext': (CONVNEXT, _convnext_ema),
    # an EMA after CPDHook that averages the BN statistics too
    'resnet18': (MODEL, lambda: dict(
        type='EMAHook', momentum=0.01, update_buffers=True, priority='LOW')),
}


def _build(model_cfg):
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    return MODELS.build(model_cfg)


def _load_small(model_cfg, path):
    ckpt = torch.load(path, weights_only=True)
    model = apply_spec(_build(model_cfg),
                       PrunedSpec.from_dict(ckpt['pruned_spec']))
    model.load_state_dict(ckpt['state_dict'])
    return model.eval(), ckpt


@pytest.mark.parametrize('name', list(CASES))
def test_ema_copies_of_removed_units_stay_dead(tmp_path, name):
    model_cfg, ema_cfg = CASES[name]
    ema_cfg = ema_cfg()
    init = tmp_path / 'random.pth'
    torch.save(
        {
            'state_dict': randomize_model(_build(model_cfg),
                                          seed=2).state_dict()
        }, init)
    cpd = dict(
        type='CPDHook',
        interval=2,
        target=0.3,
        num_steps=2,
        input_shape=(1, 3, 32, 32),
        shrink='mask')
    kwargs = runner_kwargs(tmp_path, cpd, max_iters=6)
    kwargs['custom_hooks'] = [ema_cfg, cpd]
    kwargs['optim_wrapper'] = dict(optimizer=dict(type='AdamW', lr=1e-3))
    runner = Runner(model=model_cfg, load_from=str(init), **kwargs)
    runner.train()
    hook = next(h for h in runner.hooks if isinstance(h, CPDHook))
    ema = next(h for h in runner.hooks if isinstance(h, EMAHook))
    averaged = ema.ema_model.module

    # every entry of a removed unit is exactly zero in the EMA model
    tensors = dict(averaged.named_parameters())
    tensors.update(averaged.named_buffers())
    checked = 0
    for group in hook.session.comb.groups:
        units = hook.session.removed.get(group.id)
        for member in group.members if units else ():
            tensor = tensors[member.name]
            if not tensor.is_floating_point():
                continue
            index = torch.tensor([i for u in units for i in member.units[u]])
            dead = tensor.detach().index_select(member.dim, index)
            assert torch.count_nonzero(dead) == 0, member.name
            checked += 1
    assert checked > 10
    # and the EMA model is an average, not the student
    assert not all(
        torch.equal(a, b)
        for a, b in zip(averaged.parameters(), runner.model.parameters()))

    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    averaged.eval()
    with torch.no_grad(), exact_norms(averaged, hook.session.comb,
                                      hook.session.removed):
        masked = averaged(x, mode='tensor')
    small, ckpt = _load_small(model_cfg, tmp_path / 'pruned_deploy.pth')
    assert ckpt['meta']['ema'] is True
    with torch.no_grad():
        torch.testing.assert_close(
            small(x, mode='tensor'), masked, rtol=1e-4, atol=1e-5)

    # the training checkpoint holds the EMA weights: converted, the same
    cfg = Config(dict(model=model_cfg, default_scope='mmpretrain'))
    convert_checkpoint(cfg, str(tmp_path / 'iter_6.pth'),
                       str(tmp_path / 'converted.pth'))
    small, _ = _load_small(model_cfg, tmp_path / 'converted.pth')
    with torch.no_grad():
        torch.testing.assert_close(
            small(x, mode='tensor'), masked, rtol=1e-4, atol=1e-5)
