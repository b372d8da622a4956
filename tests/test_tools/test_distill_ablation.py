"""tools/analysis/distill_ablation.py at tiny scale (``--quick``)."""
import importlib.util
import json
import math
import os.path as osp

import pytest
from mmengine.config import Config

from mmcpd.apis import init_model
from mmcpd.apis.experiment import config_dir
from tests.test_tools import by_hand
from tests.test_tools.by_hand import OVERSHOOT, TOL

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _tool():
    spec = importlib.util.spec_from_file_location(
        'mmcpd_distill_ablation',
        osp.join(ROOT, 'tools', 'analysis', 'distill_ablation.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_ablation_compares_variants_at_one_target(tmp_path):
    tool = _tool()
    work_dir = str(tmp_path / 'ablation')
    target = 0.5
    summary = tool.main([
        '--quick', '--work-dir', work_dir, '--baseline-iters', '2',
        '--cpd-iters', '4', '--seeds', '0', '--variants', 'none', 'cwd',
        '--target',
        str(target)
    ])
    assert list(summary) == ['none', 'cwd']
    with open(osp.join(work_dir, 'ablation.json')) as f:
        saved = json.load(f)
    base_cfg = Config.fromfile(
        osp.join(config_dir(), 'demo', tool.BASELINE))
    baseline = init_model(base_cfg, saved['baseline']['checkpoint'])
    base_flops = by_hand.flops(baseline, tool.SHAPE)
    assert saved['baseline']['flops'] == base_flops
    for run in saved['runs']:
        variant = run['variant']
        pruned = init_model(
            base_cfg,
            osp.join(work_dir, f'{variant}_seed0', 'pruned_deploy.pth'))
        # every variant's pruned model has the target's share of the
        # baseline's FLOPs gone, in mmengine's count
        flops = by_hand.flops(pruned, tool.SHAPE)
        assert run['flops'] == flops, variant
        removed = 1 - flops / base_flops
        assert target - TOL <= removed < target + OVERSHOOT, (variant, removed)
        # its reported mIoU is that of the pruned model on the 16 val
        # canvases of --quick, evaluated by hand (IoUMetric rounds)
        assert run['metric'] == pytest.approx(
            by_hand.miou(pruned, base_cfg, num_samples=16), abs=0.006)
        curves = run['curves']
        assert curves['iter'] == [1, 2, 3, 4]
        # validated every iteration (cpd_iters // 8 -> 1)
        assert curves['val_iter'] == [1, 2, 3, 4]
        assert all(math.isfinite(v) and v > 0 for v in curves['task'])
    cwd, none = (next(r for r in saved['runs'] if r['variant'] == v)
                 for v in ('cwd', 'none'))
    # the distillation term is non-zero and is part of the loss trained on;
    # without distillation the loss is the task's alone. (Whether it falls
    # needs a trained teacher: from a 2-iteration baseline the task loss
    # dominates and the term grows, 6.6e-4 to 8.8e-4 over 16 iterations.)
    assert all(v > 0 for v in cwd['curves']['distill'])
    for total, task, distill in zip(*(cwd['curves'][k]
                                      for k in ('total', 'task', 'distill'))):
        assert total == pytest.approx(task + distill, rel=1e-5)
    assert none['curves']['distill'] == [None] * 4
    assert none['curves']['total'] == pytest.approx(none['curves']['task'])
    with open(osp.join(work_dir, 'ablation.png'), 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    with open(osp.join(work_dir, 'ablation.md')) as f:
        table = f.read()
    assert '| none |' in table and '| cwd |' in table
    # the table and plot are redone from the saved runs alone
    again = str(tmp_path / 'again')
    redone = tool.main([
        '--from-json',
        osp.join(work_dir, 'ablation.json'), '--work-dir', again
    ])
    assert redone == saved['summary']
    with open(osp.join(again, 'ablation.md')) as f:
        assert f.read() == table


@pytest.mark.parametrize('argv, message', [
    (['--variants', 'fitnet'], 'invalid choice'),
    (['--target', '1.5'], '`--target` should be in (0, 1)'),
    (['--baseline', 'missing.pth'], "'missing.pth' does not exist"),
])
def test_bad_arguments_name_the_culprit(argv, message, capsys):
    with pytest.raises(SystemExit):
        _tool().parse_args(argv)
    assert message in capsys.readouterr().err
