"""The closed latency loop: lands on a measured target, names bad input.

The "measured" latency here is a deterministic stand-in that the table
does not predict (a fixed overhead plus the weights left), so the loop
has to correct the table's prediction to land.
"""
import sys

import pytest
import torch

import mmcpd
from mmcpd.comb import trace_groups
from mmcpd.prune.closed_loop import LatencyLoop, loop_settings
from .toy import ToyNet, linear_table

X = torch.randn(1, 3, 8, 8)


def _table(model):
    return linear_table(model, X)


class Truth:
    """Latency over the unpruned model's: 40% fixed overhead, the rest in
    proportion to the weights left (what the table over-credits)."""

    def __init__(self, full):
        self.full = self.weights(full)
        self.calls = 0

    @staticmethod
    def weights(model):
        return sum(p.numel() for n, p in model.named_parameters()
                   if n.endswith('weight') and p.dim() > 1)

    def __call__(self, model):
        assert not model.training  # measured as deployed
        self.calls += 1
        return 0.4 + 0.6 * self.weights(model) / self.full


@pytest.fixture
def toy():
    torch.manual_seed(0)
    model = ToyNet(64, 64).eval()
    return model, trace_groups(model, X)


def test_the_loop_finds_the_predicted_fraction_that_measures_the_goal():
    # measured fraction removed = 0.6 p - 0.1 p^2 for predicted p
    seen = []

    def select(p):
        seen.append(p)
        return {0: list(range(int(round(p * 1000))))}

    def predicted(new):
        return len(new[0]) / 1000

    def measure(new):
        p = predicted(new)
        return 1 - (0.6 * p - 0.1 * p * p)

    loop = LatencyLoop(tol=0.01, rounds=6)
    new, log = loop.run(0.3, select, predicted, measure, reachable=0.9)
    assert abs(log['error']) <= 0.01
    assert log['ratio'] == pytest.approx(measure(new))
    assert seen[0] == 0.3  # first guess: the table's own prediction
    assert len(log['rounds']) < 6 and len(loop.points) == len(seen)
    # a later call starts from what was measured: one round is enough
    new, log = loop.run(0.3, select, predicted, measure, reachable=0.9,
                        rounds=1)
    assert abs(log['error']) <= 0.01 and len(log['rounds']) == 1
    # beyond what can be removed: the closest, at the largest fraction
    new, log = loop.run(0.8, select, predicted, measure, reachable=0.9)
    assert predicted(new) == pytest.approx(0.9)


def test_prune_model_lands_on_the_measured_target(toy):
    model, result = toy
    truth = Truth(model)
    log = {}
    mmcpd.prune_model(model, X, target=0.3, metric='latency', round_to=1,
                      latency_table=_table(model), result=result,
                      closed_loop=dict(measure=truth, tol=0.02, rounds=5),
                      log=log)
    assert truth(model) == pytest.approx(log['ratio'])
    assert abs(0.7 / log['ratio'] - 1) <= 0.02
    assert len(log['rounds']) <= 5 and truth.calls == len(log['rounds']) + 1
    # the first round stopped at the table's prediction, which is off
    assert abs(log['rounds'][0]['error']) > 0.02


def test_open_loop_stops_at_the_predicted_latency(toy):
    model, result = toy
    truth = Truth(model)
    mmcpd.prune_model(model, X, target=0.3, metric='latency', round_to=1,
                      latency_table=_table(model), result=result,
                      closed_loop=False)
    # the table promised 0.7: the stand-in measures much slower
    assert truth(model) > 0.75


def test_bad_loop_settings_are_named(toy, monkeypatch):
    model, result = toy
    table = _table(model)
    kwargs = dict(metric='latency', latency_table=table, result=result)
    with pytest.raises(ValueError, match='`target` should be in'):
        mmcpd.prune_model(model, X, target=1.5, **kwargs)
    with pytest.raises(ValueError, match="`closed_loop`.*'tolerance'"):
        mmcpd.prune_model(model, X, target=0.3,
                          closed_loop=dict(tolerance=0.1), **kwargs)
    with pytest.raises(ValueError, match='`tol` should be in'):
        mmcpd.prune_model(model, X, target=0.3, closed_loop=dict(tol=2),
                          **kwargs)
    with pytest.raises(ValueError, match='`rounds` should be an int'):
        loop_settings(dict(rounds=0))
    with pytest.raises(TypeError, match='`closed_loop.measure`'):
        loop_settings(dict(measure=3))
    with pytest.raises(TypeError, match='`closed_loop` should be a bool'):
        loop_settings('yes')
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)
    with pytest.raises(ImportError, match='`closed_loop` needs onnxruntime'):
        mmcpd.prune_model(model, X, target=0.3, **kwargs)
    # the model was not touched by the failed calls
    assert model.conv1.out_channels == 64


def test_calibration_at_uniform_widths_seeds_the_loop(toy):
    model, result = toy
    logs = []
    for calibrate in ((), (0.25, 0.5)):
        small = ToyNet(64, 64).eval()
        small.load_state_dict(model.state_dict())
        truth, log = Truth(small), {}
        mmcpd.prune_model(small, X, target=0.3, metric='latency',
                          round_to=1, latency_table=_table(small),
                          result=result, log=log,
                          closed_loop=dict(measure=truth, tol=0.02,
                                           rounds=5, calibrate=calibrate))
        assert truth.calls == len(log['rounds']) + len(calibrate)
        logs.append(log)
    assert len(logs[1]['calibration']['measured']) == 2
    # fitted to the measured ratios, the first guess lands closer
    first = [abs(log['rounds'][0]['error']) for log in logs]
    assert first[1] < first[0] / 2
    assert abs(logs[1]['error']) <= 0.02
    with pytest.raises(ValueError, match='`calibrate` should be'):
        loop_settings(dict(calibrate=(0.5, 1.5)))


def test_coarse_units_never_send_the_loop_past_its_bracket():
    # units of 10% predicted each, measured fraction = predicted: asked
    # for 0.25, the selections at 0.2 and 0.3 bracket it; a repeat moves
    # the guess inside that bracket only (never to 0 or to the maximum)
    asked = []

    def select(p):
        asked.append(p)
        return {0: list(range(int(-(-p * 10 // 1))))}  # ceil: overshoot

    def predicted(new):
        return len(new[0]) / 10

    loop = LatencyLoop(tol=0.01, rounds=6)
    new, log = loop.run(0.25, select, predicted,
                        lambda n: 1 - predicted(n), reachable=0.9)
    assert all(0.0 < p <= 0.3 + 1e-9 for p in asked), asked
    assert predicted(new) in (0.2, 0.3)
    assert len(log['rounds']) == 2  # nothing else to try in between
