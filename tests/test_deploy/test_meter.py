"""The latency meter of the closed loop, in onnxruntime (the real path)."""
import copy

import pytest
import torch

import mmcpd
from mmcpd.deploy.meter import LatencyMeter

X = torch.randn(1, 3, 32, 32)


def test_meter_times_a_model_against_the_reference(resnet18, tmp_path):
    path = str(tmp_path / 'reference.onnx')
    meter = LatencyMeter(resnet18, X, threads=1, runs=30, warmup=5,
                         reference_onnx=path)
    small = copy.deepcopy(resnet18)
    mmcpd.prune_model(small, X, 0.75, round_to=8)  # 16x fewer conv MACs
    ratio = meter(small)
    assert ratio < 0.8  # interleaved medians: load hits both alike
    assert meter.calls == 1 and meter.seconds > 0
    assert meter.last['ms'] < meter.last['reference_ms']
    # the reference's ONNX file is reused (resume), not exported again
    again = LatencyMeter(None, X, threads=1, runs=5, warmup=1,
                         reference_onnx=path)
    assert again.reference == path
    with pytest.raises(ValueError, match='`reference_onnx` should be'):
        LatencyMeter(None, X, reference_onnx=str(tmp_path / 'no.onnx'))


def test_prune_model_closes_the_loop_in_onnxruntime(resnet18, tmp_path):
    model = copy.deepcopy(resnet18)
    log = {}
    mmcpd.prune_model(
        model, X, target=0.4, metric='latency',
        latency_table=dict(threads=1, points=2, budget_s=0.01,
                           cache=str(tmp_path)),
        closed_loop=dict(runs=20, warmup=2, rounds=2, tol=0.05), log=log)
    # each round exported and timed the candidate; the one kept is the
    # one that measured closest to 1 / 0.6 = 1.67x
    rounds = log['rounds']
    assert 1 <= len(rounds) <= 2 and log['seconds'] > 0
    best = min(rounds, key=lambda r: abs(r['error']))
    assert log['ratio'] == pytest.approx(best['measured'], abs=1e-4)
    params = [sum(p.numel() for p in m.parameters())
              for m in (model, resnet18)]
    assert params[0] < params[1]
