"""CPDHook on a real MMPretrain classifier, trained by mmengine's Runner."""
import pytest
import torch
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmpretrain.registry import MODELS as PRETRAIN_MODELS
from mmpretrain.structures import DataSample
from torch.utils.data import Dataset

import mmcpd.engine.hooks  # noqa: F401
from mmcpd.engine.hooks import CPDHook
from mmcpd.prune.spec import PrunedSpec, apply_spec

MODEL = dict(
    type='ImageClassifier',
    data_preprocessor=dict(
        type='ClsDataPreprocessor', mean=[127.5] * 3, std=[64.0] * 3),
    backbone=dict(type='ResNet', depth=18),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=4,
        in_channels=512,
        loss=dict(type='CrossEntropyLoss')))


class TinyImages(Dataset):
    """16 random 32x32 images whose label is their brightest quadrant."""

    metainfo = dict(classes=('a', 'b', 'c', 'd'))

    def __len__(self):
        return 16

    def __getitem__(self, i):
        gen = torch.Generator().manual_seed(i)
        img = torch.randint(0, 200, (3, 32, 32), generator=gen,
                            dtype=torch.uint8)
        label = i % 4
        y, x = divmod(label, 2)
        img[:, 16 * y:16 * y + 16, 16 * x:16 * x + 16] += 55
        return dict(inputs=img,
                    data_samples=DataSample().set_gt_label(label))


def _loader():
    return dict(dataset=TinyImages(), batch_size=4,
                sampler=dict(type='DefaultSampler', shuffle=True, seed=0),
                collate_fn=dict(type='pseudo_collate'))


def runner_kwargs(work_dir, hook: dict, max_iters: int = 8) -> dict:
    """Runner arguments: TinyImages, SGD, ``hook``, a checkpoint at the end."""
    return dict(
        work_dir=str(work_dir),
        train_dataloader=_loader(),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            checkpoint=dict(
                type='CheckpointHook', by_epoch=False, interval=max_iters)),
        custom_hooks=[hook],
        randomness=dict(seed=0),
        default_scope='mmpretrain')


def _build():
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return PRETRAIN_MODELS.build(MODEL)


def test_resnet18_prunes_to_target_and_exports(tmp_path):
    hook = dict(type='CPDHook', interval=4, target=0.5, num_steps=3,
                round_to=8, input_shape=(1, 3, 32, 32))
    runner = Runner(
        model=MODEL,
        work_dir=str(tmp_path),
        train_dataloader=_loader(),
        val_dataloader=_loader(),
        val_evaluator=dict(type='Accuracy'),
        optim_wrapper=dict(
            optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        train_cfg=dict(by_epoch=False, max_iters=16, val_interval=8),
        val_cfg=dict(),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', by_epoch=False,
                            interval=8)),
        custom_hooks=[hook],
        randomness=dict(seed=0),
        default_scope='mmpretrain')
    runner.train()
    cpd = next(h for h in runner.hooks if isinstance(h, CPDHook))
    assert 0.5 <= cpd.session.history[-1]['sparsity'] < 0.6
    assert len(cpd.session.val_history) == 2  # plotted with the params

    # the deploy checkpoint rebuilds from the config alone, weights_only
    ckpt = torch.load(tmp_path / 'pruned_deploy.pth', weights_only=True)
    small = _build()
    apply_spec(small, PrunedSpec.from_dict(ckpt['pruned_spec']))
    small.load_state_dict(ckpt['state_dict'])
    full = sum(p.numel() for p in _build().parameters())
    kept = sum(p.numel() for p in small.parameters())
    assert kept / full == pytest.approx(
        cpd.session.history[-1]['params_ratio'])
    for name, shape in ckpt['pruned_spec']['shapes'].items():
        if name.endswith('running_mean'):
            assert shape[0] % 8 == 0, (name, shape)
    x = torch.randn(2, 3, 32, 32)
    small.eval()
    runner.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            small(x, mode='tensor'), runner.model(x, mode='tensor'),
            atol=1e-4, rtol=1e-4)

    # any training checkpoint converts from the config alone (the CLI path)
    from mmengine.config import Config

    from mmcpd.apis.convert import main as convert_main
    cfg_path = tmp_path / 'cfg.py'
    Config(dict(model=MODEL, default_scope='mmpretrain')).dump(str(cfg_path))
    out = tmp_path / 'iter8_small.pth'
    convert_main([str(cfg_path), str(tmp_path / 'iter_8.pth'), str(out)])
    mid = torch.load(out, weights_only=True)
    # shrink='physical': the training checkpoint holds the cut student and
    # its spec, which rebuild it from the config
    train_ckpt = torch.load(tmp_path / 'iter_8.pth', weights_only=True)
    masked = _build()
    apply_spec(masked, PrunedSpec.from_dict(train_ckpt['pruned_spec']))
    masked.load_state_dict(train_ckpt['state_dict'])
    small = _build()
    apply_spec(small, PrunedSpec.from_dict(mid['pruned_spec']))
    small.load_state_dict(mid['state_dict'])
    with torch.no_grad():
        torch.testing.assert_close(
            small.eval()(x, mode='tensor'), masked.eval()(x, mode='tensor'),
            atol=1e-4, rtol=1e-4)


def test_distill_wrapper_prunes_the_student_only(tmp_path):
    import mmcpd.models.distill_wrapper  # noqa: F401  (registers it)
    from mmengine.config import Config

    from mmcpd.apis.convert import convert_checkpoint
    wrapper = dict(type='DistillWrapper', student=MODEL)
    hook = dict(type='CPDHook', interval=4, target=0.3, num_steps=2,
                input_shape=(1, 3, 32, 32))
    runner = Runner(model=wrapper, **runner_kwargs(tmp_path, hook))
    runner.train()
    cpd = next(h for h in runner.hooks if isinstance(h, CPDHook))
    assert cpd.student is runner.model.student
    assert cpd.student_prefix == 'student.'
    # the target, not overshot (round_to=1: by a few channels at most)
    assert 0.3 <= cpd.session.history[-1]['sparsity'] < 0.31
    # the deploy checkpoint holds the student alone, without prefix
    deploy = torch.load(tmp_path / 'pruned_deploy.pth', weights_only=True)
    assert not any(k.startswith(('student.', 'teacher.'))
                   for k in deploy['state_dict'])
    # and so does a conversion from the wrapper's config
    cfg = Config(dict(model=wrapper, default_scope='mmpretrain'))
    out = convert_checkpoint(cfg, str(tmp_path / 'iter_8.pth'),
                             str(tmp_path / 'small.pth'))
    assert out['pruned_spec'] == deploy['pruned_spec']
    small = _build()
    apply_spec(small, PrunedSpec.from_dict(out['pruned_spec']))
    small.load_state_dict(out['state_dict'])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            small.eval()(x, mode='tensor'),
            cpd.student.eval()(x, mode='tensor'), atol=1e-4, rtol=1e-4)
