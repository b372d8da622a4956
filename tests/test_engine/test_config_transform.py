"""wrap_for_distill, the `cpd` field and CPDRunner: a CPD base config wraps
any model and adds its hook to any config's hooks."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, RUNNERS, DefaultScope
from mmengine.runner import Runner

import mmcpd
from mmcpd.apis import build_model_from_cfg
from mmcpd.engine.config_transform import (deploy_config, transform_config,
                                           wrap_for_distill)
from mmcpd.engine.cpd_fields import RUNNER_TYPE
from mmcpd.engine.cpd_runner import CPDRunner
from mmcpd.prune.spec import CHECKPOINT_KEY
from mmcpd.utils.config import example_input_shape

CONFIGS = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs')
BASES = osp.join(CONFIGS, '_base_')
DEMO = osp.join(CONFIGS, 'demo', 'resnet18-w16_1xb64_digits.py')

KD = [dict(type='KDLoss', tau=2.0)]


def _cfg(**extra) -> Config:
    return Config(
        dict(
            model=dict(type='ImageClassifier', backbone=dict(type='X')),
            data_preprocessor=dict(num_classes=10, mean=[1.0], std=[2.0]),
            **extra))


def test_wraps_the_inherited_model():
    cfg = wrap_for_distill(_cfg(distill=dict(distill_losses=KD)))
    assert cfg.model.type == 'DistillWrapper'
    assert cfg.model.student.type == 'ImageClassifier'
    assert cfg.model.distill_losses == KD
    # the runner must not hand MMPretrain's top-level pre-processor (no
    # `type`) to the wrapper: it moves into the student
    assert cfg.data_preprocessor is None
    assert cfg.model.student.data_preprocessor.num_classes == 10


def test_no_distill_or_already_wrapped_is_unchanged():
    cfg = wrap_for_distill(_cfg())
    assert cfg.model.type == 'ImageClassifier'
    assert cfg.data_preprocessor.num_classes == 10
    cfg = _cfg(distill=dict(distill_losses=KD))
    cfg.model = dict(type='DistillWrapper', student=dict(type='A'))
    assert wrap_for_distill(cfg).model.student.type == 'A'


def test_bad_distill_fields_name_the_culprit():
    with pytest.raises(KeyError, match='teacher_ckpt'):
        wrap_for_distill(_cfg(distill=dict(teacher_ckpt='x.pth')))
    with pytest.raises(TypeError, match='`distill` should be a dict'):
        wrap_for_distill(_cfg(distill=['KDLoss']))


def test_runner_resolves_by_import_path_without_custom_imports():
    # what the CPD base configs write as `runner_type`
    path = 'mmcpd.engine.cpd_runner.CPDRunner'
    assert RUNNER_TYPE == path
    assert RUNNERS.get(path) is CPDRunner
    assert RUNNERS.get('CPDRunner') is CPDRunner
    # what configs and work dirs of earlier releases name
    assert RUNNERS.get('mmcpd.apis.config_transform.CPDRunner') is CPDRunner
    from mmengine.registry import HOOKS
    from mmcpd.engine.hooks import CPDHook
    assert HOOKS.get('mmcpd.hooks.CPDHook') is CPDHook


# ----------------------------------------------------------------------
# the `cpd` settings field


def test_cpd_field_becomes_the_last_hook_and_keeps_the_others():
    cfg = _cfg(
        cpd=dict(interval=5, target=0.3, input_shape=(1, 3, 40, 40)),
        custom_hooks=[dict(type='EMAHook')])
    notes = transform_config(cfg)
    assert [h['type'] for h in cfg.custom_hooks] == [
        'EMAHook', 'mmcpd.engine.hooks.CPDHook'
    ]
    hook = cfg.custom_hooks[-1]
    assert (hook.interval, hook.target) == (5, 0.3)
    # the log says which size combs the model, and where it came from
    assert notes == ['CPD: the model is combed with an input of shape '
                     '(1, 3, 40, 40), from `cpd.input_shape`']
    # consumed: the transform of the result changes nothing (what a run
    # dumps into its work dir re-runs)
    assert 'cpd' not in cfg
    again = Config(cfg.to_dict())
    assert transform_config(again) == [] and again.to_dict() == cfg.to_dict()


def test_latency_target_gives_rank_0_time_to_measure():
    cfg = _cfg(cpd=dict(interval=5, target=0.3, metric='latency',
                        input_shape=(1, 3, 40, 40)))
    notes = transform_config(cfg)
    assert cfg.env_cfg.dist_cfg.timeout == 7200
    assert 'rank 0 measures latency' in notes[0]
    mine = _cfg(cpd=dict(interval=5, target=0.3, metric='latency',
                         input_shape=(1, 3, 40, 40)),
                env_cfg=dict(dist_cfg=dict(backend='gloo', timeout=60)))
    transform_config(mine)
    assert mine.env_cfg.dist_cfg.timeout == 60


def test_bad_cpd_fields_name_the_culprit():
    with pytest.raises(KeyError, match='targte'):
        transform_config(_cfg(cpd=dict(targte=0.5, interval=1)))
    with pytest.raises(TypeError, match='`cpd` should be a dict'):
        transform_config(_cfg(cpd=[0.5]))
    both = _cfg(
        cpd=dict(interval=1, target=0.5),
        custom_hooks=[dict(type='CPDHook', interval=1, target=0.5)])
    with pytest.raises(ValueError, match='should not have a CPDHook'):
        transform_config(both)


@pytest.mark.parametrize('extra, shape, source', [
    (dict(model=dict(type='EncoderDecoder',
                     data_preprocessor=dict(size=(96, 128))),
          crop_size=(512, 512)), (1, 3, 96, 128),
     '`model.data_preprocessor.size`'),
    (dict(crop_size=(80, 80)), (1, 3, 80, 80), '`crop_size`'),
    (dict(test_dataloader=dict(dataset=dict(pipeline=[
        dict(type='ResizeEdge', scale=256),
        dict(type='CenterCrop', crop_size=192)
    ]))), (1, 3, 192, 192), '`test_pipeline[1]` (CenterCrop.crop_size)'),
    # a resize keeping the aspect ratio fixes no size: the train crop does
    (dict(test_pipeline=[dict(type='Resize', scale=(2048, 512),
                              keep_ratio=True)],
          train_dataloader=dict(dataset=dict(pipeline=[
              dict(type='mmpretrain.RandomResizedCrop', scale=160)]))),
     (1, 3, 160, 160), '`train_pipeline[0]` (RandomResizedCrop.scale)'),
    # RTMDet's test pipeline: a keep-ratio resize, then a fixed pad, both
    # (width, height) as mmcv writes them
    (dict(test_dataloader=dict(dataset=dict(pipeline=[
        dict(type='Resize', scale=(640, 640), keep_ratio=True),
        dict(type='Pad', size=(640, 480))
    ]))), (1, 3, 480, 640), '`test_pipeline[1]` (Pad.size)'),
    (dict(test_pipeline=[dict(type='Resize', scale=(320, 240))]),
     (1, 3, 240, 320), '`test_pipeline[0]` (Resize.scale)'),
    (dict(), (1, 3, 224, 224), 'the default (no size in the config)'),
])
def test_comb_input_size_comes_from_the_config(extra, shape, source):
    cfg = Config(dict(dict(model=dict(type='ImageClassifier')), **extra))
    assert example_input_shape(cfg) == (shape, source)


# ----------------------------------------------------------------------
# a plain mmengine Runner does not silently ignore `distill` / `cpd`


def _plain_runner(tmp_path, **fields) -> Runner:
    path = tmp_path / 'cpd_plain.py'
    path.write_text(f'_base_ = [{DEMO!r}, {osp.join(BASES, "cpd_kd.py")!r}]\n'
                    'train_cfg = dict(max_iters=2, val_interval=10)\n'
                    'train_dataloader = dict(batch_size=4)\n')
    cfg = Config.fromfile(str(path))
    cfg.work_dir = str(tmp_path)
    cfg.merge_from_dict(fields)
    cfg.custom_hooks = [
        dict(type='mmcpd.engine.hooks.CPDHook', interval=1, target=0.3,
             input_shape=(1, 3, 32, 32), deploy_file=None, plot_file=None)
    ]
    return Runner.from_cfg(cfg)


def test_plain_runner_with_distill_fails_before_training(tmp_path):
    runner = _plain_runner(tmp_path, cpd=None)
    with pytest.raises(RuntimeError, match='without the teacher') as err:
        runner.train()
    # says what to add
    assert RUNNER_TYPE in str(err.value)
    assert runner.iter == 0


def test_plain_runner_with_cpd_settings_fails_before_training(tmp_path):
    runner = _plain_runner(tmp_path, distill=None)
    with pytest.raises(RuntimeError, match='sets `cpd`, but a Runner') as err:
        runner.train()
    assert RUNNER_TYPE in str(err.value)
    assert runner.iter == 0


# ----------------------------------------------------------------------
# a pruned (deploy) checkpoint with the CPD config


def _deploy_checkpoint(cfg: Config, path: str) -> dict:
    """The demo ResNet pruned by 30% of its FLOPs, every tensor random."""
    torch.manual_seed(0)
    model = build_model_from_cfg(cfg)
    spec, _ = mmcpd.prune_model(
        model, torch.randn(1, 3, 32, 32), target=0.3, round_to=8)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.uniform_(0.5, 1.5)
    torch.save({'state_dict': model.state_dict(),
                CHECKPOINT_KEY: spec.to_dict()}, path)
    return model.state_dict()


def test_cpd_runner_tests_a_pruned_checkpoint_with_an_ema_hook(tmp_path):
    path = tmp_path / 'cpd_ema.py'
    path.write_text(
        f'_base_ = [{DEMO!r}, {osp.join(BASES, "cpd_kd.py")!r}]\n'
        # ConvNeXt's zoo config brings an EMAHook of its own
        "custom_hooks = [dict(type='EMAHook', momentum=1e-4)]\n"
        'test_dataloader = dict(batch_size=8, dataset=dict(indices=8))\n')
    cfg = Config.fromfile(str(path))
    cfg.work_dir = str(tmp_path / 'work')
    ckpt = str(tmp_path / 'pruned_deploy.pth')
    state = _deploy_checkpoint(cfg, ckpt)
    cfg.load_from = ckpt
    runner = RUNNERS.build(cfg)
    assert isinstance(runner, CPDRunner)
    metrics = runner.test()  # EMA swaps its copy in and out: same shapes
    assert 0 <= metrics['accuracy/top1'] <= 100
    student = runner.model.student.state_dict()
    assert set(student) == set(state)
    assert all(torch.equal(student[k], v) for k, v in state.items())
    ema = [h for h in runner.hooks if type(h).__name__ == 'EMAHook'][0]
    ema_student = ema.ema_model.module.student.state_dict()
    assert all(ema_student[k].shape == v.shape for k, v in state.items())

    # the deploy config builds the small model for any builder
    deploy = deploy_config(runner.cfg, torch.load(ckpt)[CHECKPOINT_KEY])
    assert 'cpd' not in deploy and 'distill' not in deploy
    assert [h['type'] for h in deploy.custom_hooks] == ['EMAHook']
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(deploy.model)
    model.load_state_dict(state)  # strict: every shape fits
