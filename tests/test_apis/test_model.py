import numpy as np
import pytest
import torch
from torch import nn

from mmcpd.apis import init_model
from mmcpd.utils.checkpoint import CheckpointError
from .conftest import KEEP, LAYER, RESNET34, small_config

X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _logits(model):
    with torch.no_grad():
        return model(X, mode='tensor')


def test_plain_checkpoint(resnet18_cfg, resnet18_pair, plain_checkpoint):
    original, _, _ = resnet18_pair
    model = init_model(resnet18_cfg, plain_checkpoint)
    assert not model.training
    torch.testing.assert_close(_logits(model), _logits(original))
    assert model.dataset_meta['classes'][3] == '3'
    assert model.cfg.model.head.num_classes == 10


def test_random_weights_without_checkpoint(resnet18_cfg):
    model = init_model(resnet18_cfg)
    assert _logits(model).shape == (2, 10)


def test_syncbn_becomes_bn(resnet18_cfg):
    cfg = resnet18_cfg.copy()
    cfg.model.backbone.norm_cfg = dict(type='SyncBN', requires_grad=True)
    model = init_model(cfg)
    norms = [
        m for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]
    assert len(norms) == 20  # ResNet-18's backbone
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in norms)
    assert _logits(model).shape == (2, 10)


def test_pruned_checkpoint_rebuilt(resnet18_cfg, resnet18_pair,
                                   pruned_checkpoint):
    original, _, _ = resnet18_pair
    model = init_model(resnet18_cfg, pruned_checkpoint)
    conv1 = dict(model.named_modules())[LAYER + 'conv1']
    assert conv1.weight.shape == (len(KEEP), 64, 3, 3)
    assert conv1.out_channels == len(KEEP)
    # The dropped channels did not matter in the original: same function.
    torch.testing.assert_close(
        _logits(model), _logits(original), rtol=1e-4, atol=1e-5)


def test_distill_checkpoint_gives_student(distill_cfg, resnet18_pair,
                                          distill_checkpoint):
    original, _, _ = resnet18_pair
    model = init_model(distill_cfg, distill_checkpoint)
    assert type(model).__name__ == 'ImageClassifier'
    names = [n for n, _ in model.named_parameters()]
    assert not any(n.startswith(('teacher', 'connectors')) for n in names)
    assert dict(model.named_modules())[LAYER + 'bn1'].num_features == 40
    torch.testing.assert_close(
        _logits(model), _logits(original), rtol=1e-4, atol=1e-5)


def test_missing_checkpoint_named(resnet18_cfg, tmp_path):
    path = str(tmp_path / 'missing.pth')
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        init_model(resnet18_cfg, path)


def test_corrupt_checkpoint_named(resnet18_cfg, tmp_path):
    path = tmp_path / 'corrupt.pth'
    path.write_bytes(np.random.default_rng(0).bytes(10000))
    with pytest.raises(CheckpointError, match='corrupt.pth'):
        init_model(resnet18_cfg, str(path))


def test_mismatching_checkpoint_names_tensor(plain_checkpoint):
    # ResNet-18 weights into a ResNet-34 config: layer1.0 fits, the extra
    # blocks of ResNet-34 are missing from the checkpoint.
    with pytest.raises(CheckpointError) as info:
        init_model(small_config(RESNET34), plain_checkpoint)
    message = str(info.value)
    assert plain_checkpoint in message and 'resnet34' in message
    assert 'backbone.layer1.2.conv1.weight' in message


def test_mismatching_shape_names_both_shapes(pruned_checkpoint, resnet18_cfg,
                                             tmp_path):
    # A pruned state dict without its spec: shapes do not fit.
    ckpt = torch.load(pruned_checkpoint, weights_only=True)
    ckpt.pop('pruned_spec')
    path = str(tmp_path / 'no_spec.pth')
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError) as info:
        init_model(resnet18_cfg, path)
    message = str(info.value)
    assert f'`{LAYER}conv1.weight`' in message
    assert '[40, 64, 3, 3] in the checkpoint' in message
    assert '[64, 64, 3, 3] in the model' in message


def test_spec_for_another_config(pruned_checkpoint, tmp_path):
    cfg = 'mmpretrain::mobilenet_v2/mobilenet-v2_8xb32_in1k.py'
    with pytest.raises(CheckpointError, match='pruned spec'):
        init_model(cfg, pruned_checkpoint)


def test_missing_config_named():
    with pytest.raises(FileNotFoundError, match='resnet19'):
        init_model('mmpretrain::resnet/resnet19_8xb32_in1k.py')
