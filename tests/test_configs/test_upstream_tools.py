"""MMPretrain's and MMSeg's own tools run CPD configs of an installed mmcpd.

mmcpd is built and installed as a wheel (not editable) into a fresh virtual
environment that sees the system's packages. Every run is a new interpreter
started in a folder without a checkout, with no ``PYTHONPATH``: the tools are
the copies that MMPretrain and MMSeg install under ``<package>/.mim/tools``,
unchanged, and the user's configs inherit ``mmcpd::_base_/...`` (or, in the
pure-Python style, ``mmcpd.configs._base_...``) before anything imports
mmcpd. A few iterations on the bundled digits data each.
"""
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest

from .venv_env import make_venv

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = osp.join(REPO, 'configs', 'demo')
SOURCES = ('setup.py', 'README.md', 'model-index.yml', '_mmcpd_scope.py',
           'mmcpd', 'configs', 'tools')
TIMEOUT = 600


def _tools(package: str) -> str:
    module = __import__(package)
    path = osp.join(osp.dirname(module.__file__), '.mim', 'tools')
    if not osp.isfile(osp.join(path, 'train.py')):
        pytest.fail(f'{package} has no installed tools in {path}')
    return path


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    """A virtual environment with mmcpd installed from a wheel build."""
    root = tmp_path_factory.mktemp('upstream')
    src = root / 'src'
    ignore = shutil.ignore_patterns('__pycache__', '.mim', '*.egg-info',
                                    'work_dirs')
    for name in SOURCES:
        path = osp.join(REPO, name)
        if osp.isdir(path):
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            os.makedirs(src, exist_ok=True)
            shutil.copy(path, src / name)
    venv = root / 'venv'
    environ = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    environ.update(OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    # sees the running environment's packages (an activated virtualenv's
    # too, not only the base interpreter's), after its own
    python = make_venv(venv)
    proc = subprocess.run([
        sys.executable, '-m', 'pip', 'install', '--no-deps', '--no-index',
        '--no-build-isolation', '--disable-pip-version-check', '-q',
        # without it pip uninstalls the mmcpd of the running environment
        '--ignore-installed', '--prefix',
        str(venv),
        str(src)
    ],
                          cwd=root,
                          env=environ,
                          capture_output=True,
                          text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    work = root / 'user'
    work.mkdir()
    return dict(python=python, env=environ, cwd=work, src=src)


def _run(env, *args) -> subprocess.CompletedProcess:
    proc = subprocess.run([env['python']] + [str(a) for a in args],
                          cwd=env['cwd'],
                          env=env['env'],
                          capture_output=True,
                          text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-5000:])
    return proc


def _results(proc) -> list:
    """The words that the snippet printed after ``RESULT``."""
    # a progress bar of the inferencer may share the line
    return [
        word for line in proc.stdout.splitlines() if 'RESULT ' in line
        for word in line[line.index('RESULT '):].split()[1:]
    ]


def test_the_install_is_not_the_checkout(env):
    proc = _run(
        env, '-c', 'import mmcpd, _mmcpd_scope, os\n'
        'from mmengine.utils import get_installed_path\n'
        'print(os.path.dirname(mmcpd.__file__))\n'
        "print(get_installed_path('mmcpd'))\n")
    package, installed = proc.stdout.split()
    assert package == installed
    assert package.startswith(osp.dirname(env['python']).rsplit('/', 1)[0])
    # the configs are copies inside the package
    assert osp.isfile(osp.join(package, '.mim', 'configs', '_base_',
                               'cpd_kd.py'))
    assert not osp.islink(osp.join(package, '.mim', 'configs'))


def test_mmcpd_scope_needs_no_import(env):
    """mmengine knows `mmcpd::` in a fresh interpreter, mmcpd not loaded."""
    config = _write(env, 'scope_only.py',
                    "_base_ = ['mmcpd::_base_/cpd_kd.py']\n"
                    'cpd = dict(target=0.7)\n')
    proc = _run(
        env, '-c', 'import sys\n'
        'from mmengine.config import Config\n'
        f'cfg = Config.fromfile({config!r})\n'
        "print(cfg.cpd.target, cfg.cpd.round_to, 'mmcpd' in sys.modules)\n")
    assert proc.stdout.split() == ['0.7', '4', 'False']


def _write(env, name: str, text: str) -> str:
    path = env['cwd'] / name
    path.write_text(text)
    return str(path)


def _copy_demo(env, name: str, to: str) -> None:
    """A demo baseline as the user's own config, without `custom_imports`:
    the CPD base's import paths must pull mmcpd in."""
    with open(osp.join(DEMO, name)) as f:
        text = f.read()
    text = text.replace(
        "custom_imports = dict(imports=['mmcpd'], allow_failed_imports="
        'False)\n', '')
    assert 'custom_imports' not in text
    _write(env, to, text)


CLS_USER = '''_base_ = ['./my_resnet.py', 'mmcpd::_base_/cpd_kd.py']
cpd = dict(interval=1, num_steps=1, target=0.3)
train_cfg = dict(max_iters=2, val_interval=2)
default_hooks = dict(checkpoint=dict(interval=2), logger=dict(interval=1))
train_dataloader = dict(batch_size=8)
val_dataloader = dict(dataset=dict(indices=16))
test_dataloader = dict(dataset=dict(indices=16))
'''


def test_mmpretrain_tools_train_test_and_load(env):
    _copy_demo(env, 'resnet18-w16_1xb64_digits.py', 'my_resnet.py')
    config = _write(env, 'my_cpd.py', CLS_USER)
    tools = _tools('mmpretrain')
    work = env['cwd'] / 'work_cls'
    proc = _run(env, osp.join(tools, 'train.py'), config, '--work-dir', work,
                '--no-pin-memory', '--no-persistent-workers')
    log = proc.stdout + proc.stderr
    # combed at the size the config trains at, and said so
    assert ('combed with an input of shape (1, 3, 32, 32), from '
            '`train_pipeline[0]` (RandomCrop.crop_size)') in log
    assert 'CPDHook step 1/1' in log
    assert 'loss_kd' in log  # distilled
    deploy = work / 'pruned_deploy.pth'
    assert deploy.is_file() and (work / 'pruned_deploy.py').is_file()

    # upstream test.py with the CPD config: the pruned checkpoint loads
    # (strictly, resized) and is evaluated and visualised
    proc = _run(env, osp.join(tools, 'test.py'), config, deploy,
                '--work-dir', work / 'test', '--show-dir', work / 'vis')
    log = proc.stdout + proc.stderr
    assert 'Load the pruned checkpoint' in log
    assert 'accuracy/top1' in log
    shown = os.listdir(work / 'vis')  # one picture per test image
    assert len(shown) == 16, shown

    # the deploy config: MMPretrain's init_model and inferencer take it; the
    # model gives what mmcpd's init_model gives from the CPD config
    proc = _run(
        env, '-c', 'import torch\n'
        'from mmpretrain.apis import init_model, '
        'ImageClassificationInferencer\n'
        'import mmcpd.apis\n'
        f"ckpt = {str(deploy)!r}\n"
        f"model = init_model({str(work / 'pruned_deploy.py')!r}, ckpt)\n"
        f'ref = mmcpd.apis.init_model({config!r}, ckpt)\n'
        'x = torch.rand(2, 3, 32, 32)\n'
        'ours = model(x, mode="tensor")\n'
        "print('RESULT', torch.equal(ours, ref(x, mode='tensor')),\n"
        '      sum(p.numel() for p in model.parameters()) ==\n'
        '      sum(p.numel() for p in ref.parameters()))\n'
        'inferencer = ImageClassificationInferencer(\n'
        f"    {str(work / 'pruned_deploy.py')!r}, pretrained=ckpt)\n"
        "img = (torch.rand(32, 32, 3) * 255).byte().numpy()\n"
        "print('RESULT', inferencer(img)[0]['pred_label'] in range(10))\n")
    assert _results(proc) == ['True', 'True', 'True'], proc.stderr


SEG_USER = '''_base_ = ['./my_unet.py', 'mmcpd::_base_/cpd_cwd.py']
cpd = dict(interval=1, num_steps=1, target=0.3)
train_cfg = dict(max_iters=2, val_interval=2)
default_hooks = dict(checkpoint=dict(interval=2), logger=dict(interval=1))
train_dataloader = dict(batch_size=4, dataset=dict(num_samples=8))
val_dataloader = dict(batch_size=4, dataset=dict(num_samples=8))
test_dataloader = dict(batch_size=4, dataset=dict(num_samples=8))
'''


def test_mmseg_tools_train_test_and_load(env):
    _copy_demo(env, 'unet-s4-d8_fcn_1xb16_digits-seg.py', 'my_unet.py')
    config = _write(env, 'my_seg_cpd.py', SEG_USER)
    tools = _tools('mmseg')
    work = env['cwd'] / 'work_seg'
    proc = _run(env, osp.join(tools, 'train.py'), config, '--work-dir', work)
    log = proc.stdout + proc.stderr
    assert ('combed with an input of shape (1, 3, 64, 64), from '
            '`model.data_preprocessor.size`') in log
    assert 'loss_cwd' in log
    deploy = work / 'pruned_deploy.pth'
    # MMSeg 1.2's test.py builds a plain Runner (it ignores `runner_type`):
    # it takes the pruned checkpoint with the deploy config
    proc = _run(env, osp.join(tools, 'test.py'), work / 'pruned_deploy.py',
                deploy, '--work-dir', work / 'test')
    log = proc.stdout + proc.stderr
    assert 'mIoU' in log
    assert 'size mismatch' not in log and 'missing keys' not in log
    proc = _run(
        env, '-c', 'import torch\n'
        'from mmseg.apis import init_model\n'
        'import mmcpd.apis\n'
        f"ckpt = {str(deploy)!r}\n"
        f"model = init_model({str(work / 'pruned_deploy.py')!r}, ckpt,\n"
        "                   device='cpu')\n"
        f'ref = mmcpd.apis.init_model({config!r}, ckpt)\n'
        'x = torch.rand(1, 3, 64, 64)\n'
        "print('RESULT', torch.equal(model(x, mode='tensor'),\n"
        "                            ref(x, mode='tensor')))\n")
    assert _results(proc) == ['True'], proc.stderr


PURE_PYTHON_USER = '''from mmengine.config import read_base

with read_base():
    from mmcpd.configs._base_.cpd_kd import *

from mmengine.dataset import DefaultSampler, InfiniteSampler
from mmpretrain.datasets import PackInputs
from mmpretrain.evaluation import Accuracy
from mmpretrain.models import (CrossEntropyLoss, GlobalAveragePooling,
                               ImageClassifier, LinearClsHead, ResNet_CIFAR)
from mmcpd.datasets import DigitsDataset

data_preprocessor = dict(num_classes=10, mean=[77.7] * 3, std=[82.5] * 3)
model = dict(
    type=ImageClassifier,
    backbone=dict(type=ResNet_CIFAR, depth=18, stem_channels=16,
                  base_channels=16, out_indices=(3, )),
    neck=dict(type=GlobalAveragePooling),
    head=dict(type=LinearClsHead, num_classes=10, in_channels=128,
              loss=dict(type=CrossEntropyLoss)))
train_dataloader = dict(
    batch_size=8, num_workers=0,
    dataset=dict(type=DigitsDataset, split='train', img_size=32,
                 pipeline=[dict(type=PackInputs)]),
    sampler=dict(type=InfiniteSampler, shuffle=True))
val_dataloader = dict(
    batch_size=8, num_workers=0,
    dataset=dict(type=DigitsDataset, split='val', img_size=32, indices=16,
                 pipeline=[dict(type=PackInputs)]),
    sampler=dict(type=DefaultSampler, shuffle=False))
val_evaluator = dict(type=Accuracy, topk=(1, ))
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01))
train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=2)
val_cfg = dict()
default_scope = 'mmpretrain'
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
    logger=dict(type='LoggerHook', interval=1))
visualizer = dict(type='UniversalVisualizer',
                  vis_backends=[dict(type='LocalVisBackend')])
log_processor = dict(by_epoch=False)
cpd.update(interval=1, num_steps=1, target=0.3)
'''


def test_pure_python_config_with_mmpretrain_train(env):
    config = _write(env, 'my_pure_cpd.py', PURE_PYTHON_USER)
    work = env['cwd'] / 'work_pure'
    proc = _run(env, osp.join(_tools('mmpretrain'), 'train.py'), config,
                '--work-dir', work, '--no-pin-memory',
                '--no-persistent-workers')
    log = proc.stdout + proc.stderr
    # the base's settings with the one the child updated, no size given:
    # the size falls back to 224 (the pipeline has no crop) and is logged
    assert 'combed with an input of shape (1, 3, 224, 224)' in log
    assert 'CPDHook step 1/1' in log and 'loss_kd' in log
    assert (work / 'pruned_deploy.pth').is_file()
    with open(next(work.glob('*/vis_data/scalars.json'))) as f:
        rows = [json.loads(line) for line in f]
    assert any('loss_kd' in row for row in rows)
