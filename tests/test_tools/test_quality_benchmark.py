"""benchmarks/quality/run.py at tiny scale (``--quick``)."""
import importlib
import json
import os.path as osp
import sys

import pytest
from mmengine.config import Config

from mmcpd.apis import init_model
from tests.test_tools import by_hand
from tests.test_tools.by_hand import OVERSHOOT, TOL

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BENCH = osp.join(ROOT, 'benchmarks', 'quality')


def _bench():
    if BENCH not in sys.path:
        sys.path.insert(0, BENCH)
    return importlib.import_module('run')


def test_quick_run_prunes_distils_and_reports(tmp_path):
    bench = _bench()
    work_dir = str(tmp_path / 'quality')
    assert bench.main([
        '--quick', '--tasks', 'cls', '--groups', 'method', 'when',
        '--arms', 'none', 'kd_prune_only', '--speedups', '4', '--jobs',
        '1', '--work-dir', work_dir
    ]) == 0
    runs = {}
    for name in ('control_control', 'none_x4', 'kd_prune_only_x4'):
        with open(osp.join(work_dir, 'runs', f'cls_{name}_seed0.json')) as f:
            runs[name] = json.load(f)
    with open(osp.join(work_dir, 'cls_baseline', 'result.json')) as f:
        base = json.load(f)
    cfg = Config.fromfile(osp.join(BENCH, 'configs', 'digits_cls.py'))
    shape = (1, 3, 16, 16)
    base_flops = by_hand.flops(init_model(cfg, base['checkpoint']), shape)
    assert base['flops'] == base_flops
    assert runs['control_control']['flops'] == base_flops
    for name in ('none_x4', 'kd_prune_only_x4'):
        run = runs[name]
        pruned = init_model(cfg, run['deploy'])
        # pruned by the real CPDHook to 4x fewer FLOPs, in mmengine's count
        flops = by_hand.flops(pruned, shape)
        assert run['flops'] == flops
        removed = 1 - flops / base_flops
        assert 0.75 - TOL <= removed < 0.75 + OVERSHOOT, (name, removed)
        # the reported top-1 is the pruned model's on the 16 val images
        # of --quick (of the harder digits), evaluated by hand
        hard = dict(cfg.val_dataloader.dataset)
        for key in ('type', 'pipeline', 'split'):
            hard.pop(key)
        assert run['metric'] == pytest.approx(
            by_hand.top1(pruned, cfg, indices=16, **hard), abs=0.01)
    # KD during pruning only: the term counts over the first 4 of the 8
    # iterations and is 0 after. Logged every 2 iterations as the mean
    # since the start (mmengine's window of 10): S/4 at iteration 4, then
    # the same sum S over 6 and 8 iterations
    kd = [row['loss_kd'] for row in runs['kd_prune_only_x4']['losses']]
    assert len(kd) == 4 and all(v > 0 for v in kd)
    assert kd[2:] == pytest.approx([kd[1] * 4 / 6, kd[1] * 4 / 8])
    assert all('loss_kd' not in row for row in runs['none_x4']['losses'])
    with open(osp.join(work_dir, 'quality.md')) as f:
        table = f.read()
    assert '| none |' in table and '| kd_prune_only |' in table
    # the compute line counts the task's runs and their training time
    wall = sum(run['wall_s'] for run in runs.values()) / 60
    assert f'3 runs {wall:.1f} min of training' in table
    with open(osp.join(work_dir, 'quality.png'), 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    # a second call finds every run cached and only redoes the report
    assert bench.main(['--quick', '--tasks', 'cls', '--groups', 'method',
                       '--arms', 'none', '--speedups', '4',
                       '--work-dir', work_dir]) == 0
    with open(osp.join(work_dir, 'runs', 'cls_none_x4_seed0.json')) as f:
        assert json.load(f) == runs['none_x4']


@pytest.mark.parametrize('argv, message', [
    (['--arms', 'fitnet'], "`--arms` should be among"),
    (['--jobs', '0'], '`--jobs` should be >= 1'),
    (['--speedups', '3'], 'invalid choice'),
])
def test_bad_arguments_name_the_culprit(argv, message, capsys):
    with pytest.raises(SystemExit):
        _bench().parse_args(argv)
    assert message in capsys.readouterr().err


def test_default_size_is_the_method_group_and_all_adds_the_rest():
    bench = _bench()
    arms = importlib.import_module('arms')
    default = bench.parse_args([])
    assert default.groups == ['method']
    runs = arms.plan(default.groups, default.tasks, default.seeds)
    # cls and seg, each: the control and 4 methods at 3 targets, 3 seeds
    assert len(runs) == 2 * 3 * (1 + 4 * 3)
    everything = bench.parse_args(['--groups', 'all'])
    assert everything.groups == list(arms.GROUPS)
    assert len(arms.plan(everything.groups, everything.tasks,
                         everything.seeds)) > len(runs)
