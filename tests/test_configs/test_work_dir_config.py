"""The config a CPD run leaves in its work dir re-runs as it is.

A real CPD run (MMPretrain ResNet on the bundled digits, KD from the
unpruned model) dumps its config; in fresh processes, that file resumes the
run after a SIGKILL while pruning (MMPretrain's own ``tools/train.py
--resume``), the resumed run's dump resumes again after a SIGKILL while
fine-tuning (mmcpd's ``tools/train.py``), and the result equals the
uninterrupted run's. MMPretrain's and MMSeg's installed ``test.py`` evaluate
the deploy checkpoint with the dumped configs (MMSeg's builds a plain
``Runner``: the CPDHook in the dumped config resizes the model).
"""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from .kill_hook import KILL_AT

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = osp.join(REPO, 'configs', 'demo')
TIMEOUT = 600

CLS_USER = f'''_base_ = [{osp.join(DEMO, 'resnet18-w16_1xb64_digits.py')!r},
          'mmcpd::_base_/cpd_kd.py']
custom_imports = dict(imports=['mmcpd', 'tests.test_configs.kill_hook'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='KillAtIter')]
# prune steps after iters 2, 4 and 6; fine-tune to 10
cpd = dict(interval=2, num_steps=3, target=0.3, min_channels=4)
train_cfg = dict(max_iters=10, val_interval=10)
param_scheduler = []
default_hooks = dict(checkpoint=dict(interval=2), logger=dict(interval=1))
train_pipeline = [dict(type='PackInputs')]
train_dataloader = dict(batch_size=8, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=16, dataset=dict(indices=32))
test_dataloader = val_dataloader
randomness = dict(seed=0)
'''

SEG_BASE = osp.join(DEMO, 'unet-s4-d8_fcn_1xb16_digits-seg.py')
SEG_USER = f'''_base_ = [{SEG_BASE!r}, 'mmcpd::_base_/cpd_cwd.py']
cpd = dict(interval=1, num_steps=1, target=0.3)
train_cfg = dict(max_iters=2, val_interval=2)
default_hooks = dict(checkpoint=dict(interval=2), logger=dict(interval=1))
train_dataloader = dict(batch_size=4, dataset=dict(num_samples=8))
val_dataloader = dict(batch_size=4, dataset=dict(num_samples=8))
test_dataloader = val_dataloader
'''


def _tools(package: str) -> str:
    module = __import__(package)
    return osp.join(osp.dirname(module.__file__), '.mim', 'tools')


def _run(cwd, *args, kill_at=None, killed=False) -> str:
    env = {k: v for k, v in os.environ.items() if k != KILL_AT}
    env.update(PYTHONPATH=REPO, OMP_NUM_THREADS='1')
    if kill_at is not None:
        env[KILL_AT] = str(kill_at)
    proc = subprocess.run([sys.executable] + [str(a) for a in args],
                          cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)
    log = proc.stdout + proc.stderr
    if killed:
        assert proc.returncode == -9, (proc.returncode, log[-3000:])
    else:
        assert proc.returncode == 0, log[-5000:]
    return log


def _deploy(work) -> dict:
    return torch.load(osp.join(work, 'pruned_deploy.pth'),
                      weights_only=True)


@pytest.fixture(scope='module')
def cls_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp('workdir')
    config = root / 'my_cpd.py'
    config.write_text(CLS_USER)
    train = osp.join(REPO, 'tools', 'train.py')
    upstream = osp.join(_tools('mmpretrain'), 'train.py')
    whole, broken = root / 'whole', root / 'broken'
    _run(root, train, config, '--work-dir', whole)
    # killed while pruning (after prune step 2, checkpoint at iter 4)
    _run(root, train, config, '--work-dir', broken, kill_at=5, killed=True)
    dumped = broken / 'my_cpd.py'
    first = dumped.read_text()
    # 1: MMPretrain's train.py resumes with the dumped config, and is
    # killed while fine-tuning (after iter 8's checkpoint)
    resumed = _run(root, upstream, dumped, '--resume', '--work-dir', broken,
                   '--no-pin-memory', '--no-persistent-workers', kill_at=9,
                   killed=True)
    # 2: mmcpd's train.py resumes with the config that run dumped
    again = _run(root, train, dumped, '--resume', '--work-dir', broken)
    return dict(root=root, whole=whole, broken=broken, dumped=dumped,
                first=first, logs=(resumed, again))


def test_dumped_config_holds_what_cpd_became(cls_runs):
    cfg = Config.fromfile(str(cls_runs['dumped']))
    # consumed by the transform: a second transform changes nothing
    assert 'cpd' not in cfg and 'distill' not in cfg
    assert cfg.model.type == 'DistillWrapper'
    hooks = [h['type'] for h in cfg.custom_hooks]
    assert hooks == ['KillAtIter', 'mmcpd.engine.hooks.CPDHook']
    assert cfg.runner_type == 'mmcpd.engine.cpd_runner.CPDRunner'
    # the resumed runs dumped it again (MMPretrain's tool adds its
    # dataloader settings): the same model and hooks, nothing to re-apply
    first = Config.fromstring(cls_runs['first'], '.py')
    assert cfg.model == first.model
    assert cfg.custom_hooks == first.custom_hooks
    assert cfg.resume and not first.resume


def test_resumed_twice_equals_the_uninterrupted_run(cls_runs):
    resumed, again = cls_runs['logs']
    assert 'resumed' in resumed.lower() and 'resumed' in again.lower()
    whole, broken = _deploy(cls_runs['whole']), _deploy(cls_runs['broken'])
    assert whole['pruned_spec'] == broken['pruned_spec']
    assert whole['state_dict'].keys() == broken['state_dict'].keys()
    for name, tensor in whole['state_dict'].items():
        assert torch.equal(tensor, broken['state_dict'][name]), name
    assert whole['meta']['params'] == broken['meta']['params']


def test_upstream_and_mmcpd_test_take_the_dumped_config(cls_runs):
    root, broken = cls_runs['root'], cls_runs['broken']
    deploy = broken / 'pruned_deploy.pth'
    results = []
    for tool in (osp.join(_tools('mmpretrain'), 'test.py'),
                 osp.join(REPO, 'tools', 'test.py')):
        log = _run(root, tool, cls_runs['dumped'], deploy, '--work-dir',
                   root / 'test')
        assert 'size mismatch' not in log and 'missing keys' not in log
        results.append(log[log.rindex('accuracy/top1'):].split()[1])
    # both evaluate the pruned model the run deployed
    assert results[0] == results[1]


def test_mmseg_test_takes_the_dumped_config(tmp_path):
    config = tmp_path / 'my_seg_cpd.py'
    config.write_text(SEG_USER)
    work = tmp_path / 'work'
    _run(tmp_path, osp.join(REPO, 'tools', 'train.py'), config,
         '--work-dir', work)
    dumped = work / 'my_seg_cpd.py'
    assert 'cpd' not in Config.fromfile(str(dumped))
    # MMSeg 1.2's test.py builds a plain Runner from the dumped config
    log = _run(tmp_path, osp.join(_tools('mmseg'), 'test.py'), dumped,
               work / 'pruned_deploy.pth', '--work-dir', tmp_path / 'test')
    assert 'resized to the pruned checkpoint' in log
    assert 'mIoU' in log
    assert 'size mismatch' not in log and 'missing keys' not in log
    # and the deploy config beside the checkpoint, as before
    log = _run(tmp_path, osp.join(_tools('mmseg'), 'test.py'),
               work / 'pruned_deploy.py', work / 'pruned_deploy.pth',
               '--work-dir', tmp_path / 'test2')
    assert 'mIoU' in log
