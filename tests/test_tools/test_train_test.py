"""tools/train.py and tools/test.py, run as a user runs them, on the demo.

Each run is a subprocess with a few iterations on the bundled digits.
"""
import glob
import json
import os
import os.path as osp
import pickle
import subprocess
import sys

import pytest
import torch

from tests.test_tools import by_hand

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CLS_CONFIG = osp.join(REPO, 'configs', 'demo', 'resnet18-w16_1xb64_digits.py')
SEG_CONFIG = osp.join(REPO, 'configs', 'demo',
                      'unet-s4-d8_fcn_1xb16_digits-seg.py')
ITERS = 4
#: Few iterations, small batches, small val sets, one checkpoint at the end.
SHORT = {
    CLS_CONFIG: [
        f'train_cfg.max_iters={ITERS}', f'train_cfg.val_interval={ITERS}',
        f'default_hooks.checkpoint.interval={ITERS}',
        'train_dataloader.batch_size=8'
    ],
    SEG_CONFIG: [
        f'train_cfg.max_iters={ITERS}', f'train_cfg.val_interval={ITERS}',
        f'default_hooks.checkpoint.interval={ITERS}',
        'train_dataloader.batch_size=4',
        'train_dataloader.dataset.num_samples=16',
        'val_dataloader.dataset.num_samples=10',
        'test_dataloader.dataset.num_samples=10'
    ],
}
METRIC = {CLS_CONFIG: 'accuracy/top1', SEG_CONFIG: 'mIoU'}


def run_tool(tool, *args):
    path = [REPO] + os.environ.get('PYTHONPATH', '').split(os.pathsep)
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, path)),
        OMP_NUM_THREADS='1')
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', tool)] +
        [str(a) for a in args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600)
    return proc


def read_test_metrics(work_dir):
    """The metrics that tools/test.py wrote in ``work_dir``."""
    files = glob.glob(osp.join(work_dir, '*', '*.json'))
    assert len(files) == 1, files
    with open(files[0]) as f:
        return json.load(f)


@pytest.fixture(scope='module', params=[CLS_CONFIG, SEG_CONFIG])
def trained(request, tmp_path_factory):
    config = request.param
    work_dir = tmp_path_factory.mktemp('train')
    proc = run_tool('train.py', config, '--work-dir', work_dir,
                    '--cfg-options', *SHORT[config])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return config, work_dir, proc


def test_train_writes_checkpoint_and_validates(trained):
    config, work_dir, proc = trained
    checkpoint = osp.join(work_dir, f'iter_{ITERS}.pth')
    assert osp.isfile(checkpoint)
    state = torch.load(checkpoint, map_location='cpu', weights_only=False)
    assert state['meta']['iter'] == ITERS
    # the val metric shows in the log of the last iteration
    assert 'Iter(val) [' in proc.stdout + proc.stderr
    assert METRIC[config] in proc.stdout + proc.stderr


def last_val_metrics(work_dir):
    """The val metrics that training logged last in ``work_dir``."""
    files = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    assert len(files) == 1, files
    with open(files[0]) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r for r in records if 'lr' not in r][-1]


def test_test_reports_metric_of_the_trained_weights(trained, tmp_path):
    config, work_dir, _ = trained
    options = [o for o in SHORT[config] if o.startswith('test_')]
    proc = run_tool('test.py', config, osp.join(work_dir, f'iter_{ITERS}.pth'),
                    '--work-dir', tmp_path, '--out', tmp_path / 'preds.pkl',
                    *(['--cfg-options', *options] if options else []))
    assert proc.returncode == 0, proc.stderr[-3000:]
    metric = read_test_metrics(tmp_path)[METRIC[config]]
    # an evaluation of the same weights by hand, without runner, pipeline,
    # data pre-processor or metric class
    model = _trained_model(config, work_dir)
    if config == CLS_CONFIG:
        assert metric == pytest.approx(by_hand.top1(model, model.cfg))
    else:  # MMSeg's IoUMetric rounds to 2 decimals
        assert metric == pytest.approx(
            by_hand.miou(model, model.cfg, num_samples=10), abs=0.006)
    # one dumped prediction per test item
    with open(tmp_path / 'preds.pkl', 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == (360 if config == CLS_CONFIG else 10)
    # the same weights on the same data as the val at the end of training
    assert metric == pytest.approx(last_val_metrics(work_dir)[METRIC[config]])


def _trained_model(config, work_dir):
    from mmcpd.apis import init_model
    return init_model(config, osp.join(work_dir, f'iter_{ITERS}.pth'))


def _prune_block(state_dict, keep):
    """Keep ``keep`` inner channels of the last basic block of ResNet-18."""
    block = 'backbone.layer4.1'
    shapes, pruned = {}, dict(state_dict)
    for name in ('conv1.weight', 'bn1.weight', 'bn1.bias', 'bn1.running_mean',
                 'bn1.running_var'):
        key = f'{block}.{name}'
        pruned[key] = state_dict[key][:keep].clone()
        shapes[key] = list(pruned[key].shape)
    key = f'{block}.conv2.weight'
    pruned[key] = state_dict[key][:, :keep].clone()
    shapes[key] = list(pruned[key].shape)
    attrs = {
        f'{block}.conv1': dict(out_channels=keep),
        f'{block}.bn1': dict(num_features=keep),
        f'{block}.conv2': dict(in_channels=keep),
    }
    return pruned, shapes, attrs


def test_test_loads_pruned_checkpoint(trained, tmp_path):
    from mmcpd.prune.spec import CHECKPOINT_KEY, PrunedSpec

    config, work_dir, _ = trained
    if config != CLS_CONFIG:
        pytest.skip('one architecture is enough for the spec path')
    state = torch.load(
        osp.join(work_dir, f'iter_{ITERS}.pth'),
        map_location='cpu',
        weights_only=False)
    state_dict, shapes, attrs = _prune_block(state['state_dict'], keep=40)
    pruned = osp.join(tmp_path, 'pruned.pth')
    torch.save(
        dict(
            meta=state['meta'],
            state_dict=state_dict,
            **{CHECKPOINT_KEY: PrunedSpec(shapes, attrs).to_dict()}), pruned)
    proc = run_tool('test.py', config, pruned, '--work-dir',
                    tmp_path / 'pruned')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'Resized the model to the pruned spec' in proc.stdout + proc.stderr
    # the pruned block computes what the full one does once the input
    # channels of conv2 that read the removed channels are zeroed
    model = _trained_model(config, work_dir)
    with torch.no_grad():
        model.backbone.layer4[1].conv2.weight[:, 40:] = 0
    assert read_test_metrics(tmp_path / 'pruned')['accuracy/top1'] == \
        pytest.approx(by_hand.top1(model, model.cfg))

    # the same weights without the spec do not fit the model: loud failure
    torch.save(
        dict(meta=state['meta'], state_dict=state_dict),
        osp.join(tmp_path, 'no_spec.pth'))
    proc = run_tool('test.py', config, osp.join(tmp_path, 'no_spec.pth'),
                    '--work-dir', tmp_path / 'no_spec')
    assert proc.returncode != 0
    assert 'size mismatch for backbone.layer4.1.conv1.weight' in proc.stderr


def test_train_resolves_mmcpd_scope(tmp_path):
    """``mmcpd::demo/...`` resolves in the installed package's configs."""
    proc = run_tool('train.py', 'mmcpd::demo/resnet18-w16_1xb64_digits.py',
                    '--work-dir', tmp_path, '--cfg-options',
                    'train_cfg.max_iters=1', 'train_cfg.val_interval=10',
                    'train_dataloader.batch_size=4')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert osp.isfile(osp.join(tmp_path, 'iter_1.pth'))


def test_bad_resume_path_fails(tmp_path):
    proc = run_tool('train.py', CLS_CONFIG, '--work-dir', tmp_path, '--resume',
                    tmp_path / 'missing.pth')
    assert proc.returncode != 0
    assert 'missing.pth' in proc.stderr


def test_config_inherits_from_mmcpd_scope(tmp_path):
    """A user's config inherits ``mmcpd::`` configs once mmcpd is imported.

    Needs an install where mmengine finds ``<location>/mmcpd/.mim``: a wheel
    (``pip install .``) or a legacy editable install (egg-link).
    """
    config = tmp_path / 'user_config.py'
    config.write_text("_base_ = ['mmcpd::demo/resnet18-w16_1xb64_digits.py']\n"
                      'train_cfg = dict(max_iters=7)\n')
    code = ('import mmcpd\n'
            'from mmengine.config import Config\n'
            f'cfg = Config.fromfile({str(config)!r})\n'
            'print(cfg.train_cfg.max_iters, cfg.train_cfg.type,\n'
            '      cfg.model.backbone.base_channels)\n')
    proc = subprocess.run([sys.executable, '-c', code],
                          cwd=tmp_path,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-3:] == ['7', 'IterBasedTrainLoop', '16']
