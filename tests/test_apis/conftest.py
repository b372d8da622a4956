"""Small real models and hand-made mmcpd checkpoints, shared with the deploy
tests (``tests/test_deploy/conftest.py`` imports these fixtures).

The pruned checkpoint is made without mmcpd's pruner: ResNet-18's
``layer1.0.conv1`` loses 24 of its 64 output channels, with ``bn1`` and the
input channels of ``conv2``. The dropped channels' weights in ``conv2`` are
zeroed in the original first, so the original and the pruned model must
compute the same function: that is the oracle.
"""
import copy

import pytest
import torch
from mmengine.config import Config

from mmcpd.apis import build_model_from_cfg, resolve_config_path
from mmcpd.prune.spec import CHECKPOINT_KEY, PrunedSpec, apply_spec

RESNET18 = 'mmpretrain::resnet/resnet18_8xb32_in1k.py'
RESNET34 = 'mmpretrain::resnet/resnet34_8xb32_in1k.py'
LAYER = 'backbone.layer1.0.'
KEEP = torch.arange(0, 64, 8).tolist() + torch.arange(1, 64, 2).tolist()
KEEP = sorted(set(KEEP))  # 40 channels, not a prefix


def small_config(path: str) -> Config:
    cfg = Config.fromfile(resolve_config_path(path))
    cfg.model.head.num_classes = 10
    return cfg


@pytest.fixture(scope='session')
def resnet18_cfg():
    return small_config(RESNET18)


@pytest.fixture(scope='session')
def resnet18_pair(resnet18_cfg):
    """The original model (dropped channels zeroed in conv2) and its
    hand-pruned copy, with the spec."""
    torch.manual_seed(0)
    original = build_model_from_cfg(resnet18_cfg)
    mods = dict(original.named_modules())
    conv1, bn1, conv2 = (mods[LAYER + n] for n in ('conv1', 'bn1', 'conv2'))
    dropped = [c for c in range(64) if c not in KEEP]
    with torch.no_grad():
        conv2.weight[:, dropped] = 0
        bn1.running_mean.uniform_(-0.5, 0.5)
        bn1.running_var.uniform_(0.5, 1.5)
    n = len(KEEP)
    spec = PrunedSpec(
        shapes={
            LAYER + 'conv1.weight': [n, 64, 3, 3],
            LAYER + 'bn1.weight': [n],
            LAYER + 'bn1.bias': [n],
            LAYER + 'bn1.running_mean': [n],
            LAYER + 'bn1.running_var': [n],
            LAYER + 'conv2.weight': [64, n, 3, 3],
        },
        attrs={
            LAYER + 'conv1': dict(out_channels=n),
            LAYER + 'bn1': dict(num_features=n),
            LAYER + 'conv2': dict(in_channels=n),
        })
    state = copy.deepcopy(original.state_dict())
    keep = torch.tensor(KEEP)
    state[LAYER + 'conv1.weight'] = state[LAYER + 'conv1.weight'][keep]
    for name in ('weight', 'bias', 'running_mean', 'running_var'):
        state[LAYER + 'bn1.' + name] = state[LAYER + 'bn1.' + name][keep]
    state[LAYER + 'conv2.weight'] = state[LAYER + 'conv2.weight'][:, keep]
    pruned = apply_spec(build_model_from_cfg(resnet18_cfg), spec)
    pruned.load_state_dict(state)
    return original.eval(), pruned.eval(), spec


@pytest.fixture(scope='session')
def plain_checkpoint(resnet18_pair, tmp_path_factory):
    original, _, _ = resnet18_pair
    path = tmp_path_factory.mktemp('ckpt') / 'resnet18.pth'
    torch.save(
        dict(
            meta=dict(dataset_meta=dict(classes=[str(i) for i in range(10)])),
            state_dict=original.state_dict()), path)
    return str(path)


@pytest.fixture(scope='session')
def pruned_checkpoint(resnet18_pair, tmp_path_factory):
    _, pruned, spec = resnet18_pair
    path = tmp_path_factory.mktemp('ckpt') / 'resnet18_pruned.pth'
    torch.save(
        {
            'state_dict': pruned.state_dict(),
            CHECKPOINT_KEY: spec.to_dict()
        }, path)
    return str(path)


@pytest.fixture(scope='session')
def distill_checkpoint(resnet18_pair, tmp_path_factory):
    """What a DistillWrapper around the pruned student saves: student.,
    teacher. and connector tensors, spec named from the wrapper."""
    original, pruned, spec = resnet18_pair
    state = {f'student.{k}': v for k, v in pruned.state_dict().items()}
    state.update({f'teacher.{k}': v for k, v in original.state_dict().items()})
    state['connectors.0.weight'] = torch.zeros(64, 40, 1, 1)
    wrapper_spec = PrunedSpec(
        shapes={
            f'student.{k}': v
            for k, v in spec.shapes.items()
        },
        attrs={
            f'student.{k}': v
            for k, v in spec.attrs.items()
        })
    path = tmp_path_factory.mktemp('ckpt') / 'distill.pth'
    torch.save({
        'state_dict': state,
        CHECKPOINT_KEY: wrapper_spec.to_dict()
    }, path)
    return str(path)


@pytest.fixture(scope='session')
def distill_cfg(resnet18_cfg):
    cfg = copy.deepcopy(resnet18_cfg)
    student = copy.deepcopy(cfg.model)
    cfg.model = dict(
        type='mmcpd.DistillWrapper',
        student=student,
        teacher=dict(checkpoint=None),
        distill_losses=[dict(type='KDLoss', tau=4.0)])
    return cfg
