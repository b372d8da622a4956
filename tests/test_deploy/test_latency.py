import numpy as np
import pytest
import torch
from torch import nn

from mmcpd.deploy import export_onnx, latency_stats, measure_latency


@pytest.fixture(scope='module')
def tiny_onnx(tmp_path_factory):
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(8, 4)).eval()
    path = tmp_path_factory.mktemp('onnx') / 'tiny.onnx'
    return export_onnx(
        model, torch.randn(1, 3, 16, 16), str(path), dynamic_batch=True)


def test_stats_of_known_times():
    times = np.arange(1, 101, dtype=float)  # 1 .. 100 ms
    stats = latency_stats(times, batch=4)
    assert stats.mean_ms == pytest.approx(50.5)
    assert stats.median_ms == pytest.approx(50.5)
    assert stats.p90_ms == pytest.approx(90.1)
    assert stats.p99_ms == pytest.approx(99.01)
    assert stats.std_ms == pytest.approx(np.std(times, ddof=1))
    assert (stats.min_ms, stats.max_ms) == (1.0, 100.0)
    # 4 images per 50.5 ms
    assert stats.throughput == pytest.approx(4000 / 50.5)
    assert stats.runs == 100
    with pytest.raises(ValueError, match='empty'):
        latency_stats([], batch=1)


def test_measure_counts_runs_and_reports_setup(tiny_onnx):
    result = measure_latency(
        tiny_onnx,
        shape=(2, 3, 16, 16),
        warmup=2,
        runs=7,
        threads=1,
        progress=False)
    assert len(result.times_ms) == 7
    assert all(t > 0 for t in result.times_ms)
    assert result.stats.runs == 7 and result.stats.batch == 2
    assert result.threads == 1 and result.warmup == 2
    assert result.providers_used == ['CPUExecutionProvider']
    assert result.input_shape == [2, 3, 16, 16]
    assert result.onnxruntime_version and result.cpu
    assert 'times_ms' not in result.to_dict()
    assert result.spinning is False  # mmcpd's default, see below


@pytest.mark.parametrize('spin', [False, True])
def test_sessions_spin_only_when_asked(tiny_onnx, spin):
    from mmcpd.deploy import make_session
    session = make_session(tiny_onnx, threads=1, spin=spin)
    options = session.get_session_options()
    for scope in ('intra_op', 'inter_op'):
        key = f'session.{scope}.allow_spinning'
        assert options.get_session_config_entry(key) == str(int(spin))
    result = measure_latency(
        tiny_onnx, shape=(1, 3, 16, 16), warmup=0, runs=2, threads=1,
        progress=False, spin=spin)
    assert result.spinning is spin
    with pytest.raises(TypeError, match='`spin` should be a bool'):
        measure_latency(tiny_onnx, shape=(1, 3, 16, 16), runs=1, spin='no')


def test_dynamic_input_needs_shape(tiny_onnx):
    with pytest.raises(ValueError, match='dynamic axes'):
        measure_latency(tiny_onnx, warmup=0, runs=1, progress=False)


@pytest.mark.parametrize('kwargs, message', [
    (dict(provider='tpu'), '`provider` should be one of'),
    (dict(runs=0), '`runs` should be an int >= 1'),
    (dict(warmup=-1), '`warmup` should be an int >= 0'),
    (dict(threads=0), '`threads` should be an int >= 1'),
])
def test_bad_settings(tiny_onnx, kwargs, message):
    with pytest.raises(ValueError, match=message):
        measure_latency(
            tiny_onnx, shape=(1, 3, 16, 16), progress=False, **kwargs)


def test_unavailable_provider_is_named(tiny_onnx):
    import onnxruntime as ort
    if 'CUDAExecutionProvider' in ort.get_available_providers():
        pytest.skip('CUDA is available here')
    with pytest.raises(RuntimeError, match='CUDAExecutionProvider'):
        measure_latency(
            tiny_onnx, shape=(1, 3, 16, 16), provider='cuda', progress=False)


def test_interleaved_files_each_get_all_runs(tiny_onnx, tmp_path):
    from mmcpd.deploy import measure_latencies
    wide = nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1)).eval()
    big = export_onnx(wide, torch.randn(1, 3, 16, 16),
                      str(tmp_path / 'wide.onnx'))
    small, large = measure_latencies([tiny_onnx, big],
                                     shape=(1, 3, 16, 16),
                                     warmup=2,
                                     runs=20,
                                     threads=1,
                                     progress=False,
                                     interleave=True)
    assert small.path == tiny_onnx and large.path == big
    assert len(small.times_ms) == len(large.times_ms) == 20
    # ~150x the multiply-adds: slower even on a busy machine.
    assert large.stats.median_ms > small.stats.median_ms
