"""Training checkpoints written by the previous release (one flat CPDHook
state, version 2; tests/data/old_release) still resume and convert, and
give what that release's own uninterrupted run gave."""
import json
import os.path as osp
import shutil

import pytest
import torch

from mmcpd.apis.convert import convert_checkpoint
from mmcpd.prune.session import STATE_VERSION
from mmcpd.prune.spec import PrunedSpec, apply_spec
from .test_cpd_hook import _hook
from .toy_runner import ToyClassifier, make_runner

DATA = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'data',
                'old_release')


def _fixture(shrink: str):
    with open(osp.join(DATA, f'toy_{shrink}_iter_6.json')) as f:
        expected = json.load(f)
    return osp.join(DATA, expected['checkpoint']), expected


def _close(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            assert x[key] == pytest.approx(y[key], rel=1e-9), key


@pytest.mark.parametrize('shrink', ['physical', 'mask'])
def test_old_checkpoint_resumes_to_the_old_result(tmp_path, shrink):
    path, expected = _fixture(shrink)
    old = torch.load(path, weights_only=False)
    assert old['cpd_hook']['version'] == 2 and 'session' not in old[
        'cpd_hook']
    load_from = str(tmp_path / 'iter_6.pth')
    shutil.copy(path, load_from)
    hook = dict(expected['hook'], input_shape=tuple(
        expected['hook']['input_shape']))
    runner = make_runner(tmp_path, hook, checkpoint_interval=6,
                         resume=True, load_from=load_from)
    runner.train()
    session = _hook(runner).session
    final = expected['final']
    assert runner.iter == final['iter']
    assert {str(k): v for k, v in session.removed.items()} == \
        final['removed']
    _close(session.history, final['history'])
    deploy = torch.load(tmp_path / 'pruned_deploy.pth', weights_only=True)
    assert {k: list(v.shape) for k, v in deploy['state_dict'].items()} \
        == final['deploy_shapes']
    # what it writes now is the nested layout, and resumes the same way
    new = torch.load(tmp_path / 'iter_24.pth', weights_only=False)
    assert new['cpd_hook']['version'] == STATE_VERSION
    assert new['cpd_hook']['session']['pruner']['shrink'] == shrink


@pytest.mark.parametrize('shrink', ['physical', 'mask'])
def test_old_checkpoint_converts_as_it_did(tmp_path, shrink):
    path, expected = _fixture(shrink)
    converted = expected['iter_6_converted']
    deploy = convert_checkpoint(ToyClassifier(), path,
                                str(tmp_path / 'deploy.pth'))
    assert {k: list(v.shape) for k, v in deploy['state_dict'].items()} \
        == converted['shapes']
    model = ToyClassifier()
    apply_spec(model, PrunedSpec.from_dict(deploy['pruned_spec']))
    model.load_state_dict(deploy['state_dict'])
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model.eval()(x)
    torch.testing.assert_close(logits, torch.tensor(converted['logits']),
                               rtol=1e-5, atol=1e-6)
