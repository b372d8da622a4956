import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint
from torch import nn
from torch.utils.data import Dataset

from mmcpd.utils.checkpoint import (CheckpointError, add_mmengine_safe_globals,
                                    load_checkpoint_file,
                                    mmengine_safe_globals)


class _ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 2)

    def forward(self, x, mode='tensor'):
        out = self.linear(torch.stack(x) if isinstance(x, list) else x)
        return dict(loss=out.sum()) if mode == 'loss' else out


class _ToyData(Dataset):
    metainfo = dict(classes=('a', 'b'))

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return dict(x=torch.full((2, ), float(i)))


class _NumpyMetric(BaseMetric):
    """Returns numpy scalars, as many real metrics do."""

    def process(self, data_batch, data_samples):
        self.results.append(np.float64(0.5))

    def compute_metrics(self, results):
        return dict(acc=np.float64(np.mean(results)))


@pytest.fixture(scope='module')
def runner_checkpoint(tmp_path_factory):
    """A checkpoint written by mmengine's own Runner, optimizer included."""
    work_dir = tmp_path_factory.mktemp('runner')
    loader = dict(
        dataset=_ToyData(),
        sampler=dict(type='DefaultSampler', shuffle=False),
        batch_size=2,
        collate_fn=dict(type='default_collate'))
    runner = Runner(
        model=_ToyModel(),
        work_dir=str(work_dir),
        train_dataloader=loader,
        val_dataloader=loader,
        val_evaluator=[_NumpyMetric()],
        val_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        param_scheduler=dict(type='MultiStepLR', milestones=[1]),
        train_cfg=dict(by_epoch=True, max_epochs=1, val_interval=1),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook')),
        default_scope=None)
    runner.train()
    return str(work_dir / 'epoch_1.pth')


def test_plain_torch_refuses_runner_checkpoint(runner_checkpoint):
    # Without the allow-list (a fresh process: ``import mmcpd`` registers
    # it) torch refuses mmengine's HistoryBuffer.
    code = ('import sys, torch; '
            'torch.load(sys.argv[1], weights_only=True)')
    out = subprocess.run([sys.executable, '-c', code, runner_checkpoint],
                         capture_output=True,
                         text=True,
                         timeout=300)
    assert out.returncode != 0
    assert 'HistoryBuffer' in out.stderr


def test_runner_checkpoint_loads_weights_only(runner_checkpoint):
    ckpt = load_checkpoint_file(runner_checkpoint)
    assert set(ckpt) >= {'meta', 'state_dict', 'message_hub', 'optimizer'}
    lr = ckpt['message_hub']['log_scalars']['train/lr']
    assert isinstance(lr, HistoryBuffer)
    assert lr.mean() == pytest.approx(0.01)
    assert ckpt['state_dict']['linear.weight'].shape == (2, 2)
    milestones = ckpt['param_schedulers'][0]['milestones']
    assert dict(milestones) == {1: 1}


def test_context_lets_mmengine_loader_read_it(runner_checkpoint):
    # mmengine calls torch.load with torch's default weights_only=True.
    with mmengine_safe_globals():
        ckpt = _load_checkpoint(runner_checkpoint, map_location='cpu')
    assert 'message_hub' in ckpt


def test_context_keeps_process_wide_registration(runner_checkpoint):
    add_mmengine_safe_globals()
    with mmengine_safe_globals():
        pass
    # Leaving the context must not undo add_mmengine_safe_globals().
    ckpt = torch.load(runner_checkpoint, weights_only=True)
    assert 'message_hub' in ckpt


class _Evil:

    def __reduce__(self):
        return (os.getcwd, ())


def test_unknown_global_is_refused_and_named(tmp_path):
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {}, 'payload': _Evil()}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint_file(path)
    assert path in str(info.value)
    assert 'getcwd' in str(info.value)


class _SneakyGetattr:
    """Pickles as getattr(HistoryBuffer, '__init__'): not a statistic."""

    def __reduce__(self):
        return (getattr, (HistoryBuffer, '__init__'))


def test_getattr_is_limited_to_history_buffer_statistics(tmp_path):
    path = str(tmp_path / 'sneaky.pth')
    torch.save({'x': _SneakyGetattr()}, path)
    with pytest.raises(CheckpointError, match='__init__'):
        load_checkpoint_file(path)


def test_missing_file_named(tmp_path):
    path = str(tmp_path / 'nope.pth')
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        load_checkpoint_file(path)


def test_random_bytes_named(tmp_path):
    path = tmp_path / 'corrupt.pth'
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(
            CheckpointError, match='corrupt.pth.*not a readable PyTorch'):
        load_checkpoint_file(str(path))


def test_non_dict_refused(tmp_path):
    path = str(tmp_path / 'tensor.pth')
    torch.save(torch.zeros(3), path)
    with pytest.raises(CheckpointError, match='holds a Tensor'):
        load_checkpoint_file(path)
