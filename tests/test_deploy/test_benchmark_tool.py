"""tools/benchmark_onnx.py and tools/export_onnx.py, end to end."""
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import onnx
import pytest
from onnx import numpy_helper

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _run(tool, *args):
    env = dict(os.environ)
    env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    return subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', tool)] +
        [str(a) for a in args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600)


@pytest.fixture(scope='module')
def config_file(resnet18_cfg, tmp_path_factory):
    path = tmp_path_factory.mktemp('cfg') / 'resnet18_10cls.py'
    resnet18_cfg.dump(str(path))
    return str(path)


def test_compare_configs(config_file, plain_checkpoint, pruned_checkpoint,
                         tmp_path):
    out = _run('benchmark_onnx.py', '--baseline', config_file,
               plain_checkpoint, '--pruned', config_file, pruned_checkpoint,
               '--shape', 32, 32, '--warmup', 2, '--runs', 5, '--threads', 1,
               '--compare-slim', '--work-dir', tmp_path, '--no-progress')
    assert out.returncode == 0, out.stderr
    assert 'speedup' in out.stdout
    result = json.load(open(tmp_path / 'benchmark.json'))
    system = result['system']
    assert system['threads'] == 1 and system['provider'] == 'cpu'
    assert system['onnxruntime_version'] and system['cpu']
    assert result['settings']['shape'] == [1, 3, 32, 32]
    base, pruned = result['models']['baseline'], result['models']['pruned']
    for entry in (base, pruned):
        assert entry['latency']['runs'] == 5 and len(entry['times_ms']) == 5
        assert entry['flops_counter'] == 'mmengine.analysis'
        assert entry['verify']['output']['max_abs'] < 1e-4
        assert entry['onnxslim']['unslimmed_latency']['runs'] == 5
        assert len(entry['onnxslim']['other_times_ms']) == 5
    # One block lost 24 of 64 channels: fewer FLOPs and params.
    assert pruned['flops'] < base['flops']
    assert pruned['params'] == base['params'] - 24 * 64 * 9 * 2 - 24 * 2
    speedup = result['speedup']
    assert speedup['flops'] == pytest.approx(base['flops'] / pruned['flops'])
    assert speedup['latency'] == pytest.approx(base['latency']['mean_ms'] /
                                               pruned['latency']['mean_ms'])
    with open(tmp_path / 'latency.png', 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_compare_onnx_files(config_file, plain_checkpoint, tmp_path):
    out = _run('export_onnx.py', config_file, plain_checkpoint, '--shape', 1,
               3, 32, 32, '--out', tmp_path / 'a.onnx', '--simplify')
    assert out.returncode == 0, out.stderr
    assert 'matches torch' in out.stdout
    out = _run('benchmark_onnx.py', '--baseline', tmp_path / 'a.onnx',
               '--pruned', tmp_path / 'a.onnx', '--shape', 3, 32, 32,
               '--warmup', 2, '--runs', 5, '--threads', 1, '--work-dir',
               tmp_path / 'bench', '--no-progress')
    assert out.returncode == 0, out.stderr
    result = json.load(open(tmp_path / 'bench' / 'benchmark.json'))
    assert result['models']['pruned']['flops_counter'].startswith('onnx')
    assert result['speedup']['flops'] == pytest.approx(1.0)
    assert osp.isfile(tmp_path / 'bench' / 'latency.png')


def test_corrupt_checkpoint_is_named(config_file, tmp_path):
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(b'not a checkpoint' * 100)
    out = _run('benchmark_onnx.py', '--baseline', config_file, bad, '--shape',
               32, 32, '--runs', 1, '--work-dir', tmp_path)
    assert out.returncode == 1
    assert 'bad.pth' in out.stdout + out.stderr
    assert 'not a readable PyTorch checkpoint' in out.stdout + out.stderr


def _tool(name):
    """A tool's module, to run its ``main`` in this process."""
    spec = importlib.util.spec_from_file_location(
        f'mmcpd_tool_{name}', osp.join(ROOT, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _perturbing(export):
    """``export`` that then adds 0.5 to one weight of the file's first
    convolution: a wrong file, as a buggy exporter could write it."""

    def wrong_export(model, inputs, path, *args, **kwargs):
        out = export(model, inputs, path, *args, **kwargs)
        proto = onnx.load(out)
        conv = next(n for n in proto.graph.node if n.op_type == 'Conv')
        weight = next(i for i in proto.graph.initializer
                      if i.name == conv.input[1])
        array = numpy_helper.to_array(weight).copy()
        array.flat[0] += 0.5
        weight.CopyFrom(numpy_helper.from_array(array, weight.name))
        onnx.save(proto, out)
        return out

    return wrong_export


def test_export_tool_rejects_a_wrong_file(config_file, plain_checkpoint,
                                          tmp_path, monkeypatch, capsys):
    import mmcpd.deploy
    args = [
        config_file, plain_checkpoint, '--shape', '1', '3', '32', '32',
        '--out',
        str(tmp_path / 'a.onnx')
    ]
    tool = _tool('export_onnx')
    assert tool.main(args) == 0
    assert 'matches torch' in capsys.readouterr().out
    monkeypatch.setattr(mmcpd.deploy, 'export_onnx',
                        _perturbing(mmcpd.deploy.export_onnx))
    assert tool.main(args) == 1
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'a.onnx'}" in err
    assert 'max abs diff' in err and 'max rel diff' in err


def test_benchmark_tool_rejects_a_wrong_file(config_file, plain_checkpoint,
                                             tmp_path, monkeypatch, capsys):
    import mmcpd.apis.benchmark
    monkeypatch.setattr(mmcpd.apis.benchmark, 'export_onnx',
                        _perturbing(mmcpd.apis.benchmark.export_onnx))
    code = _tool('benchmark_onnx').main([
        '--baseline', config_file, plain_checkpoint, '--shape', '32', '32',
        '--runs', '1', '--work-dir',
        str(tmp_path), '--no-progress'
    ])
    assert code == 1
    out = capsys.readouterr().out
    assert 'differs from torch' in out and 'max abs diff' in out
    assert not osp.exists(tmp_path / 'benchmark.json')
