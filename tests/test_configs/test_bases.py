"""The CPD base configs combine with a user's MMPretrain / MMSeg config."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.hooks import EMAHook
from mmengine.registry import HOOKS, RUNNERS

from mmcpd.engine.cpd_runner import CPDRunner, transform_config
from mmcpd.engine.cpd_settings import is_cpd_hook
from mmcpd.engine.hooks import CPDHook

CONFIGS = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs')
BASES = osp.join(CONFIGS, '_base_')
RECIPES = sorted(glob.glob(osp.join(CONFIGS, 'recipes', '*.py')))
DEMOS = sorted(glob.glob(osp.join(CONFIGS, 'demo', 'cpd_*.py')))


def _user_config(tmp_path, zoo: str, base: str, extra: str = '') -> Config:
    path = tmp_path / 'my_cpd.py'
    path.write_text(f'_base_ = [{zoo!r}, {osp.join(BASES, base)!r}]\n'
                    "load_from = 'my_trained.pth'\n" + extra)
    return Config.fromfile(str(path))


def _hooks(cfg: Config) -> list:
    """The custom hooks that the CPDRunner builds from ``cfg``."""
    transform_config(cfg)
    return [HOOKS.build(dict(h)) for h in cfg.custom_hooks]


@pytest.mark.parametrize('zoo, base, loss, size', [
    ('mmpretrain::resnet/resnet18_8xb32_in1k.py', 'cpd_kd.py', 'KDLoss',
     224),
    ('mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py',
     'cpd_cwd.py', 'CWDLoss', 512),
])
def test_inheriting_a_base_adopts_cpd(tmp_path, zoo, base, loss, size):
    cfg = _user_config(tmp_path, zoo, base)
    assert RUNNERS.get(cfg.runner_type) is CPDRunner
    user_model = cfg.model.type
    hooks = _hooks(cfg)
    # the hook with the base's settings: half of the FLOPs, ranked per
    # FLOP, widths of 4 (issue 23's transfer benchmark), combed at the
    # config's size (crop 224 / crop 512), not a fixed 224
    hook = [h for h in hooks if isinstance(h, CPDHook)]
    assert len(hook) == 1
    hook = hook[0]
    assert (hook.settings.target, hook.settings.metric,
            hook.settings.rank_by) == (0.5, 'flops', None)
    assert (hook.settings.round_to, hook.settings.min_channels) == (4, 1)
    assert hook.input_shape == (1, 3, size, size)
    # the runner wraps the user's model, whatever it is
    assert cfg.model.type == 'DistillWrapper'
    assert cfg.model.student.type == user_model
    assert cfg.model.distill_losses[0]['type'] == loss


def test_a_child_changes_one_setting(tmp_path):
    cfg = _user_config(tmp_path, 'mmpretrain::resnet/resnet18_8xb32_in1k.py',
                       'cpd_kd.py',
                       'cpd = dict(target=0.7, input_shape=(1, 3, 96, 96))\n')
    hook = _hooks(cfg)[-1]
    assert isinstance(hook, CPDHook)
    assert hook.settings.target == 0.7
    assert hook.input_shape == (1, 3, 96, 96)
    # everything else is the base's
    assert (hook.settings.metric, hook.settings.rank_by,
            hook.settings.round_to,
            hook.schedule_args['interval']) == ('flops', None, 4, 100)
    assert cfg.model.distill_losses[0]['type'] == 'KDLoss'


def test_zoo_hooks_and_the_cpd_hook_both_stay(tmp_path):
    """ConvNeXt's config has its own `custom_hooks` (an EMAHook)."""
    zoo = 'mmpretrain::convnext/convnext-tiny_32xb128_in1k.py'
    cfg = _user_config(tmp_path, zoo, 'cpd_kd.py')
    hooks = _hooks(cfg)
    # MMPretrain's EMAHook (an mmengine EMAHook) is kept, CPD's is added
    assert [type(h).__name__ for h in hooks] == ['EMAHook', 'CPDHook']
    assert isinstance(hooks[0], EMAHook) and isinstance(hooks[1], CPDHook)
    assert hooks[0].ema_cfg["momentum"] == cfg.custom_hooks[0].momentum


def test_hook_base_alone_prunes_without_distillation(tmp_path):
    cfg = _user_config(tmp_path, 'mmpretrain::resnet/resnet18_8xb32_in1k.py',
                       'cpd_hook.py')
    assert 'distill' not in cfg
    assert isinstance(_hooks(cfg)[-1], CPDHook)
    assert cfg.model.type == 'ImageClassifier'


def test_cpd_none_trains_without_pruning(tmp_path):
    cfg = _user_config(tmp_path, 'mmpretrain::resnet/resnet18_8xb32_in1k.py',
                       'cpd_kd.py', 'cpd = None\n')
    transform_config(cfg)
    assert not any(is_cpd_hook(h) for h in cfg.get('custom_hooks') or [])
    assert cfg.model.type == 'DistillWrapper'


@pytest.mark.parametrize('path', RECIPES + DEMOS, ids=osp.basename)
def test_recipes_and_demos_set_only_what_differs(path):
    with open(path) as f:
        text = f.read()
    assert 'custom_hooks' not in text and 'CPDHook' not in text
    cfg = Config.fromfile(path)
    target = cfg.cpd.target
    hook = _hooks(cfg)[-1]
    assert isinstance(hook, CPDHook)
    assert hook.settings.target == target
    # combed at the size the config trains at
    size = 32 if 'digits.py' in path else 64 if (
        'digits-seg' in path or 'digits-det' in path) \
        else 512 if 'ade20k' in path else 224
    assert hook.input_shape == (1, 3, size, size), path


def test_latency_base_targets_measured_latency(tmp_path):
    cfg = _user_config(tmp_path, 'mmpretrain::resnet/resnet18_8xb32_in1k.py',
                       'cpd_latency.py', 'cpd = dict(target=0.4)\n')
    assert 'distill' not in cfg
    hook = _hooks(cfg)[-1]
    assert isinstance(hook, CPDHook)
    assert (hook.settings.target, hook.settings.metric,
            hook.settings.rank_by) == (0.4, 'latency', None)
    assert hook.settings.latency_table == dict(provider='cpu')
    # the closed loop measures the exported student at every step
    loop, meter = hook.settings.loop
    assert loop == dict(tol=0.03, rounds=4) and meter == {}
    assert hook.settings.round_to == 8
    assert hook.schedule_args['interval'] == 100


@pytest.mark.parametrize('name',
                         ['cpd_hook', 'cpd_kd', 'cpd_cwd', 'cpd_det',
                          'cpd_latency'])
def test_pure_python_bases_equal_the_text_bases(name):
    """The two styles of each CPD base give the same settings."""
    import os.path as osp

    import mmcpd.configs
    from mmengine.config import Config

    from mmcpd.utils.config import load_config
    text = load_config(f'mmcpd::_base_/{name}.py')
    pure = Config.fromfile(
        osp.join(osp.dirname(mmcpd.configs.__file__), '_base_',
                 f'{name}.py'))
    for key in ('cpd', 'distill'):
        assert text.get(key) == pure.get(key), key
