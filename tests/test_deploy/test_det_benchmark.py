"""tools/export_onnx.py and tools/benchmark_onnx.py on a detector config
(RTMDet-tiny, 128x128): raw head outputs checked against torch, an
unpruned and a pruned checkpoint timed, and the forward override taken from
``--forward`` or from the config's CPDHook (issue 25, item 5)."""
import importlib.util
import json
import os.path as osp

import onnx
import pytest
import torch

from mmcpd.apis import build_model_from_cfg, prune_model
from mmcpd.prune.spec import CHECKPOINT_KEY
from mmcpd.prune.surgery.verify import randomize_model
from mmcpd.utils.config import load_config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py'
SIZE = 128
#: A forward override that decodes and clips boxes (tests/test_deploy).
DECODED = 'tests.test_deploy.test_det_export.decoded_boxes'
TENSOR_MODE = 'mmcpd.comb.tensor_mode.tensor_forward'


def _tool(name):
    """A tool's module, to run its ``main`` in this process."""
    spec = importlib.util.spec_from_file_location(
        f'mmcpd_tool_{name}', osp.join(ROOT, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def hook_config(tmp_path_factory):
    """RTMDet-tiny with a CPDHook whose ``forward`` decodes boxes."""
    path = tmp_path_factory.mktemp('cfg') / 'rtmdet_cpd.py'
    path.write_text(f'_base_ = {CONFIG!r}\n'
                    'custom_hooks = [\n'
                    "    dict(type='mmcpd.engine.hooks.CPDHook', interval=1, "
                    f'target=0.3, forward={DECODED!r})\n'
                    ']\n')
    return str(path)


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """An unpruned and a 30%-pruned checkpoint (every unit group loses 30%
    of its units, by magnitude) of the randomised model."""
    folder = tmp_path_factory.mktemp('ckpt')
    torch.manual_seed(0)
    model = randomize_model(build_model_from_cfg(load_config(CONFIG)))
    model.eval()
    torch.save({'state_dict': model.state_dict()}, folder / 'plain.pth')
    spec, _ = prune_model(model, torch.randn(1, 3, SIZE, SIZE), ratio=0.3)
    torch.save(
        {
            'state_dict': model.state_dict(),
            CHECKPOINT_KEY: spec.to_dict()
        }, folder / 'pruned.pth')
    return str(folder / 'plain.pth'), str(folder / 'pruned.pth')


def _outputs(path):
    return [o.name for o in onnx.load(path).graph.output]


def test_benchmark_tool_times_an_unpruned_and_a_pruned_detector(
        checkpoints, tmp_path, capsys):
    plain, pruned = checkpoints
    # Random weights give box distances of up to about 300 pixels: 1e-3
    # pixels is float32 round-off there (the default 1e-4 is for logits).
    code = _tool('benchmark_onnx').main([
        '--baseline', CONFIG, plain, '--pruned', CONFIG, pruned, '--shape',
        str(SIZE),
        str(SIZE), '--warmup', '2', '--runs', '5', '--threads', '1',
        '--interleave', '--atol', '1e-3', '--work-dir',
        str(tmp_path), '--no-progress'
    ])
    assert code == 0, capsys.readouterr()
    result = json.load(open(tmp_path / 'benchmark.json'))
    base, small = result['models']['baseline'], result['models']['pruned']
    for entry in (base, small):
        # tensor mode: scores and box distances of RTMDet's 3 levels, each
        # checked against torch
        assert entry['forward'] is None
        assert len(entry['verify']) == 2 * 3 == len(_outputs(entry['onnx']))
        assert entry['latency']['runs'] == 5 and len(entry['times_ms']) == 5
    assert small['flops'] < base['flops'] and small['params'] < base['params']
    assert result['speedup']['flops'] == pytest.approx(base['flops'] /
                                                       small['flops'])


def test_export_tool_takes_the_config_hooks_forward(hook_config, tmp_path,
                                                    capsys):
    tool = _tool('export_onnx')
    shape = ['--shape', '1', '3', str(SIZE), str(SIZE)]
    assert tool.main(
        [hook_config, 'none', *shape, '--out',
         str(tmp_path / 'hook.onnx')]) == 0
    assert 'matches torch' in capsys.readouterr().out
    assert len(_outputs(tmp_path / 'hook.onnx')) == 2  # scores, boxes
    # --forward overrides the hook's
    assert tool.main([
        hook_config, 'none', *shape, '--out',
        str(tmp_path / 'raw.onnx'), '--forward', TENSOR_MODE
    ]) == 0
    assert len(_outputs(tmp_path / 'raw.onnx')) == 2 * 3


def test_benchmark_tool_records_the_forward(hook_config, tmp_path, capsys):
    code = _tool('benchmark_onnx').main([
        '--baseline', hook_config, '--shape',
        str(SIZE),
        str(SIZE), '--warmup', '1', '--runs', '2', '--threads', '1',
        '--work-dir',
        str(tmp_path), '--no-progress'
    ])
    assert code == 0, capsys.readouterr()
    entry = json.load(open(tmp_path / 'benchmark.json'))['models']['baseline']
    assert entry['forward'] == DECODED and len(entry['verify']) == 2


def test_a_forward_that_does_not_import_is_named(tmp_path, capsys):
    code = _tool('benchmark_onnx').main([
        '--baseline', CONFIG, '--forward', 'tests.no_such.forward', '--runs',
        '1', '--work-dir',
        str(tmp_path), '--no-progress'
    ])
    assert code == 1
    assert 'tests.no_such.forward' in capsys.readouterr().out


def test_latency_meter_exports_through_the_forward(checkpoints):
    """The closed loop's meter times what the forward returns (CPDHook's
    ``forward`` is to be passed on to it)."""
    from mmcpd.apis import init_model
    from mmcpd.deploy import LatencyMeter
    model = init_model(CONFIG, checkpoints[1])
    meter = LatencyMeter(
        model,
        torch.randn(1, 3, SIZE, SIZE),
        threads=1,
        runs=2,
        warmup=1,
        forward=DECODED)
    try:
        assert len(_outputs(meter.reference)) == 2
        assert meter(model) > 0 and meter.calls == 1
    finally:
        meter.close()
