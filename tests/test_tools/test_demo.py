"""tools/demo.py: the whole offline chain at tiny scale (``--quick``)."""
import importlib.util
import json
import os.path as osp

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _demo():
    spec = importlib.util.spec_from_file_location(
        'mmcpd_demo_tool', osp.join(ROOT, 'tools', 'demo.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_demo_writes_a_sane_table(tmp_path):
    work_dir = str(tmp_path / 'demo')
    results = _demo().main(['--quick', '--work-dir', work_dir])
    with open(osp.join(work_dir, 'demo_results.json')) as f:
        saved = json.load(f)['results']
    assert set(saved) == {'cls', 'seg'}
    for key, res in saved.items():
        base, pruned = res['baseline'], res['pruned']
        # the pruned model is physically smaller, in torch and in ONNX
        assert pruned['params'] < base['params'], key
        assert pruned['flops'] < base['flops'], key
        for row in (base, pruned):
            assert 0.0 <= row['metric'] <= 100.0, (key, row)
            assert row['latency_ms'] > 0, (key, row)
            assert osp.isfile(row['onnx']), row['onnx']
            assert osp.isfile(row['checkpoint']), row['checkpoint']
        assert res['speedup']['flops'] > 1.0
        assert results[key]['pruned']['params'] == pruned['params']
    with open(osp.join(work_dir, 'demo_results.md')) as f:
        table = f.read()
    assert table.count('| baseline |') == 2
    assert table.count('| pruned |') == 2


@pytest.mark.parametrize('argv, message', [
    (['--task', 'det'], 'invalid choice'),
    (['--cpd-iters', '0'], '`--cpd-iters` should be >= 1, but got 0'),
])
def test_bad_arguments_name_the_culprit(argv, message, capsys):
    with pytest.raises(SystemExit):
        _demo().parse_args(argv)
    assert message in capsys.readouterr().err
