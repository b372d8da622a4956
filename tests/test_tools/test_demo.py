"""tools/demo.py: the whole offline chain at tiny scale (``--quick``)."""
import importlib.util
import json
import os.path as osp

import pytest
from mmengine.config import Config

from mmcpd.apis import init_model
from mmcpd.apis.experiment import config_dir, find_cpd_hook
from tests.test_tools import by_hand
from tests.test_tools.by_hand import OVERSHOOT, TOL

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _demo():
    spec = importlib.util.spec_from_file_location(
        'mmcpd_demo_tool', osp.join(ROOT, 'tools', 'demo.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_demo_prunes_by_the_target_and_reports_true_numbers(tmp_path):
    demo = _demo()
    work_dir = str(tmp_path / 'demo')
    results = demo.main(['--quick', '--work-dir', work_dir])
    with open(osp.join(work_dir, 'demo_results.json')) as f:
        saved = json.load(f)['results']
    assert set(saved) == {'cls', 'seg'}
    val_samples = demo.QUICK['samples'][1]
    for key, res in saved.items():
        task = demo.TASKS[key]
        base_cfg = Config.fromfile(
            osp.join(config_dir(), 'demo', task['baseline']))
        target = find_cpd_hook(
            Config.fromfile(osp.join(config_dir(), 'demo',
                                     task['cpd'])))['target']
        models = {
            name: init_model(base_cfg, res[name]['checkpoint'])
            for name in ('baseline', 'pruned')
        }
        # the pruned model is smaller by the configured FLOPs target, in
        # mmengine's count (its own, not the hook's cost model)
        counted = {
            name: by_hand.flops(model, task['shape'])
            for name, model in models.items()
        }
        removed = 1 - counted['pruned'] / counted['baseline']
        assert target - TOL <= removed < target + OVERSHOOT, (key, removed)
        for name, model in models.items():
            row = res[name]
            assert row['flops'] == counted[name], (key, name)
            assert row['params'] == sum(p.numel()
                                        for p in model.parameters())
            # the reported metric is that of the checkpoint, evaluated by
            # hand on the same val samples
            if key == 'cls':
                metric = by_hand.top1(model, base_cfg, indices=val_samples)
                assert row['metric'] == pytest.approx(metric), (key, name)
            else:  # MMSeg's IoUMetric rounds to 2 decimals
                metric = by_hand.miou(
                    model, base_cfg, num_samples=val_samples)
                assert row['metric'] == pytest.approx(
                    metric, abs=0.006), (key, name)
            assert osp.isfile(row['onnx']), row['onnx']
        speedup = res['speedup']
        assert speedup['flops'] == pytest.approx(counted['baseline'] /
                                                 counted['pruned'])
        assert speedup['latency'] == pytest.approx(
            res['baseline']['latency_ms'] / res['pruned']['latency_ms'])
        assert results[key]['pruned']['params'] == res['pruned']['params']
    with open(osp.join(work_dir, 'demo_results.md')) as f:
        table = f.read()
    assert table.count('| baseline |') == 2
    assert table.count('| pruned |') == 2
    # the target beside the measured speedup
    for res in saved.values():
        assert res['target']['metric'] == 'flops'
        assert (f"| flops {1 / (1 - res['target']['fraction']):.2f}x lower "
                f"(remove {res['target']['fraction']:g}) | "
                f"{res['speedup']['latency']:.2f}x | "
                f"{res['speedup']['flops']:.2f}x |") in table


@pytest.mark.parametrize('argv, message', [
    (['--task', 'pose'], 'invalid choice'),
    (['--cpd-iters', '0'], '`--cpd-iters` should be >= 1, but got 0'),
    (['--target', '1.5'], '`--target` should be in (0, 1), but got 1.5'),
    (['--metric', 'energy'], 'invalid choice'),
])
def test_bad_arguments_name_the_culprit(argv, message, capsys):
    with pytest.raises(SystemExit):
        _demo().parse_args(argv)
    assert message in capsys.readouterr().err


def test_latency_target_row_shows_the_median_and_the_hooks_measure(
        tmp_path):
    import torch

    demo = _demo()
    path = str(tmp_path / 'pruned_deploy.pth')
    torch.save(dict(meta=dict(latency_ratio=0.5)), path)
    row = dict(metric=90.0, params=1e6, flops=1e8, latency_ms=2.0)
    res = dict(task='cls', metric='top-1 (%)', input_shape=[1, 3, 32, 32],
               baseline=row, pruned=row, system=dict(threads=2),
               target=dict(metric='latency', fraction=0.5, speedup=2.0),
               speedup=dict(latency=2.5, latency_median=1.92, flops=3.5,
                            params=6.5),
               hook_speedup=demo._hook_speedup(path))
    table = demo.markdown(dict(cls=res), 1.0)
    assert ("| cls | latency 2.00x lower (remove 0.5) | 2.50x (median "
            "1.92x; CPDHook's closed loop 2.00x) | 3.50x |") in table
