"""The CPD base configs combine with a user's MMPretrain / MMSeg config."""
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.registry import HOOKS, RUNNERS

from mmcpd.apis.config_transform import CPDRunner, wrap_for_distill
from mmcpd.hooks import CPDHook

BASES = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs',
    '_base_')


def _user_config(tmp_path, zoo: str, base: str) -> Config:
    path = tmp_path / 'my_cpd.py'
    path.write_text(f'_base_ = [{zoo!r}, {osp.join(BASES, base)!r}]\n'
                    "load_from = 'my_trained.pth'\n")
    return Config.fromfile(str(path))


@pytest.mark.parametrize('zoo, base, loss', [
    ('mmpretrain::resnet/resnet18_8xb32_in1k.py', 'cpd_kd.py', 'KDLoss'),
    ('mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py',
     'cpd_cwd.py', 'CWDLoss'),
])
def test_inheriting_a_base_adopts_cpd(tmp_path, zoo, base, loss):
    cfg = _user_config(tmp_path, zoo, base)
    # the hook with its defaults: half of the FLOPs, widths of 8
    hook = HOOKS.build(dict(cfg.custom_hooks[0]))
    assert isinstance(hook, CPDHook)
    assert (hook.target, hook.metric) == (0.5, 'flops')
    assert hook.guards.round_to == 8
    # the runner wraps the user's model, whatever it is
    assert RUNNERS.get(cfg.runner_type) is CPDRunner
    user_model = cfg.model.type
    wrap_for_distill(cfg)
    assert cfg.model.type == 'DistillWrapper'
    assert cfg.model.student.type == user_model
    assert cfg.model.distill_losses[0]['type'] == loss


def test_hook_base_alone_prunes_without_distillation(tmp_path):
    cfg = _user_config(tmp_path, 'mmpretrain::resnet/resnet18_8xb32_in1k.py',
                       'cpd_hook.py')
    assert 'distill' not in cfg and 'runner_type' not in cfg
    assert isinstance(HOOKS.build(dict(cfg.custom_hooks[0])), CPDHook)
