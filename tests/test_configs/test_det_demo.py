"""``tools/demo.py --task det``: the detection chain at tiny scale
(``--quick``): baseline, CPD with the detection base, COCO evaluation,
ONNX export and timing; the numbers it reports are those of its files."""
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
        'mmcpd_demo_tool_det', osp.join(ROOT, 'tools', 'demo.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_detection_demo(tmp_path):
    demo = _demo()
    work_dir = str(tmp_path / 'demo')
    demo.main(['--quick', '--task', 'det', '--work-dir', work_dir])
    with open(osp.join(work_dir, 'demo_results.json')) as f:
        res = json.load(f)['results']['det']
    # the COCO files went into the demo's work dir, at the quick sizes
    data = osp.join(work_dir, 'det', 'data')
    for split, num in zip(('train', 'val'), demo.QUICK['samples']):
        with open(osp.join(data, split, 'annotations.json')) as f:
            assert len(json.load(f)['images']) == num
    task = demo.TASKS['det']
    base_cfg = Config.fromfile(osp.join(config_dir(), 'demo',
                                        task['baseline']))
    target = find_cpd_hook(
        Config.fromfile(osp.join(config_dir(), 'demo',
                                 task['cpd'])))['target']
    models = {name: init_model(base_cfg, res[name]['checkpoint'])
              for name in ('baseline', 'pruned')}
    counted = {name: by_hand.flops(model, task['shape'])
               for name, model in models.items()}
    removed = 1 - counted['pruned'] / counted['baseline']
    assert target - TOL <= removed < target + OVERSHOOT, removed
    for name, model in models.items():
        row = res[name]
        assert row['flops'] == counted[name]
        assert row['params'] == sum(p.numel() for p in model.parameters())
        assert 0 <= row['metric'] <= 100  # CocoMetric's fraction, in %
        assert osp.isfile(row['onnx'])
    assert res['speedup']['flops'] == pytest.approx(counted['baseline'] /
                                                    counted['pruned'])
    with open(osp.join(work_dir, 'demo_results.md')) as f:
        table = f.read()
    assert ('| RetinaNet-R18/4 on digit canvases (detection) | pruned | '
            f"bbox mAP (%) {res['pruned']['metric']:.2f} |") in table
