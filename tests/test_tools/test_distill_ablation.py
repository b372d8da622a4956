"""tools/analysis/distill_ablation.py at tiny scale (``--quick``)."""
import importlib.util
import json
import os.path as osp

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _tool():
    spec = importlib.util.spec_from_file_location(
        'mmcpd_distill_ablation',
        osp.join(ROOT, 'tools', 'analysis', 'distill_ablation.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_ablation_compares_variants_at_one_target(tmp_path):
    work_dir = str(tmp_path / 'ablation')
    summary = _tool().main([
        '--quick', '--work-dir', work_dir, '--baseline-iters', '2',
        '--cpd-iters', '4', '--seeds', '0', '--variants', 'none', 'cwd'
    ])
    assert list(summary) == ['none', 'cwd']
    with open(osp.join(work_dir, 'ablation.json')) as f:
        saved = json.load(f)
    base_flops = saved['baseline']['flops']
    for run in saved['runs']:
        # the same target: every variant's pruned model has about half
        # the FLOPs of the baseline
        assert 0.3 < run['flops'] / base_flops < 0.6, run['variant']
        assert 0.0 <= run['metric'] <= 100.0
        curves = run['curves']
        assert curves['iter'] == [1, 2, 3, 4]
        assert all(v > 0 for v in curves['task'])
        # validated every iteration (cpd_iters // 8 -> 1)
        assert curves['val_iter'] == [1, 2, 3, 4]
    cwd, none = (next(r for r in saved['runs'] if r['variant'] == v)
                 for v in ('cwd', 'none'))
    assert all(v >= 0 for v in cwd['curves']['distill'])
    assert none['curves']['distill'] == [None] * 4
    assert osp.getsize(osp.join(work_dir, 'ablation.png')) > 0
    with open(osp.join(work_dir, 'ablation.md')) as f:
        table = f.read()
    assert '| none |' in table and '| cwd |' in table
    # the table and plot are redone from the saved runs alone
    again = str(tmp_path / 'again')
    redone = _tool().main([
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
