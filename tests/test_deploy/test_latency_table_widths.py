"""Width windows of the latency table (the measured width rule's data)."""
import pytest
import torch
from torch import nn

from mmcpd.deploy import latency_table as lt
from mmcpd.prune.widths import QUANTA

X = torch.randn(1, 3, 16, 16)


class Small(nn.Module):
    """A conv of 24 channels, a depthwise conv, a grouped conv, a head."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 24, 3, padding=1)
        self.dw = nn.Conv2d(24, 24, 3, padding=1, groups=24)
        self.grouped = nn.Conv2d(24, 24, 3, padding=1, groups=2)
        self.head = nn.Linear(24, 5)

    def forward(self, x):
        x = self.grouped(self.dw(self.conv(x)))
        return self.head(x.mean((2, 3)))


@pytest.mark.parametrize('full', [5, 16, 48, 49, 64, 200, 1280])
def test_width_windows(full):
    block = QUANTA[-1]
    windows = lt.width_windows(full)
    assert windows == sorted(set(windows)) and windows[0] == 1
    assert max(windows) <= full
    if full <= 3 * block:
        assert windows == list(range(1, full + 1))
    else:  # the floor's widths and one whole block between multiples
        assert windows[:block] == list(range(1, block + 1))
        top = windows[-1]
        assert top % block == 0 and abs(top - full / 2) <= block
        assert windows[-block - 1:] == list(range(top - block, top + 1))


def test_windows_are_measured_once_and_cached(tmp_path, monkeypatch):
    model = Small().eval()
    plain = lt.latency_table(model, X, threads=1, points=2, budget_s=0.01,
                             cache=str(tmp_path))
    assert all('widths' not in layer for layer in plain['layers'])
    # the grid is cached: asking for the windows times only them
    real = lt._measure_windows
    measured = []

    def windows_only(layer, *args):
        measured.append(layer['param'])
        return real(layer, *args)

    def fail(*args, **kwargs):
        raise AssertionError('measured again')

    monkeypatch.setattr(lt, '_measure_layer', fail)
    monkeypatch.setattr(lt, '_model_ms', fail)
    monkeypatch.setattr(lt, '_measure_windows', windows_only)
    table = lt.latency_table(model, X, threads=1, points=2, budget_s=0.01,
                             cache=str(tmp_path), widths=True)
    assert sorted(measured) == sorted(
        ['conv.weight', 'dw.weight', 'grouped.weight', 'head.weight'])
    layers = {layer['param']: layer for layer in table['layers']}
    conv = layers['conv.weight']['widths']
    assert conv['out']['w'] == lt.width_windows(24)
    assert conv['in']['w'] == [1, 2, 3]
    assert all(t > 0 for t in conv['out']['ms'])
    assert list(layers['dw.weight']['widths']) == ['out']
    assert layers['grouped.weight']['widths'] == {}  # the fixed rule's
    assert set(layers['head.weight']['widths']) == {'out', 'in'}
    # and then nothing is measured
    monkeypatch.setattr(lt, '_measure_windows', fail)
    again = lt.latency_table(model, X, threads=1, points=2, budget_s=0.01,
                             cache=str(tmp_path), widths=True)
    assert again == table


def test_widths_off_the_blocked_layout_pay_its_reorders():
    # widths 2 and 4 ran blocked (their reorders timed apart), 3 did not
    pairs = [(1.0, 0.4), (1.2, 0.0), (1.4, 0.8)]
    assert lt._with_layout([2, 3, 4], pairs) == pytest.approx(
        [1.0, 1.2 + 0.4 * 3 / 2, 1.4])
    # none blocked (a GPU, a kernel without the layout): times as measured
    assert lt._with_layout([2, 3], [(1.0, 0.0), (2.0, 0.0)]) == [1.0, 2.0]
