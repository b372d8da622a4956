"""Measured latency tables: layers found, one-layer graphs, the cache."""
import json

import numpy as np
import pytest
import torch
from torch import nn

from mmcpd.deploy import latency_table as lt

X = torch.randn(1, 3, 32, 32)


def test_width_grid():
    assert lt.width_grid(64, 2) == [8, 64]
    assert lt.width_grid(64, 3) == [8, 32, 64]
    assert lt.width_grid(100, 4) == [8, 40, 72, 100]
    assert lt.width_grid(3, 5) == [3]


@pytest.mark.parametrize('layer,x', [
    (nn.Conv2d(16, 24, 3, stride=2, padding=1), torch.randn(1, 16, 9, 9)),
    (nn.Conv2d(24, 24, 5, padding=2, groups=24, bias=False),
     torch.randn(1, 24, 8, 8)),
    (nn.Conv2d(16, 32, 3, padding='same', dilation=2),
     torch.randn(1, 16, 7, 7)),
    (nn.Linear(16, 40), torch.randn(1, 5, 16)),
])
def test_one_layer_graph_computes_the_layer(layer, x):
    import onnxruntime as ort
    from onnx import numpy_helper

    layers = lt.collect_layers(layer, x)
    assert len(layers) == 1 and layers[0]['param'] == '.weight'
    entry = layers[0]
    proto = lt._layer_graph(entry, entry['in'], entry['out'])
    # the timed graph is the layer: same output for the layer's weights
    for init in proto.graph.initializer:
        value = layer.weight if init.name == 'W' else layer.bias
        init.CopyFrom(numpy_helper.from_array(
            value.detach().numpy(), init.name))
    session = ort.InferenceSession(proto.SerializeToString(),
                                   providers=['CPUExecutionProvider'])
    feed = x.reshape(-1, x.shape[-1]) if entry['kind'] == 'linear' else x
    got = session.run(None, {'x': feed.numpy()})[0]
    want = layer(x).detach().numpy()
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-4,
                               atol=1e-4)


def test_table_covers_every_layer_and_is_cached(resnet18, tmp_path,
                                                monkeypatch):
    table = lt.latency_table(resnet18, X, threads=1, points=2,
                             budget_s=0.01, cache=str(tmp_path))
    convs = {
        f'{n}.weight'
        for n, m in resnet18.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    }
    assert {layer['param'] for layer in table['layers']} == convs
    stem = next(layer for layer in table['layers']
                if layer['param'] == 'backbone.conv1.weight')
    assert (stem['grid_in'], stem['grid_out']) == ([3], [8, 64])
    assert stem['size'] == [32, 32] and stem['stride'] == [2, 2]
    for layer in table['layers']:
        ms = np.asarray(layer['ms'])
        assert ms.shape == (len(layer['grid_in']), len(layer['grid_out']))
        assert (ms > 0).all()
    assert table['model_ms'] > 0
    full = sum(layer['ms'][-1][-1] for layer in table['layers'])
    assert table['rest_ms'] == pytest.approx(table['model_ms'] - full)
    # the file names the machine, its key too
    machine = lt.machine_info(1, 'cpu')
    assert table['machine'] == machine
    assert machine['threads'] == 1 and machine['cpu']
    with open(table['cache']) as f:
        assert json.load(f)['machine'] == machine
    # the second call measures nothing

    def fail(*args, **kwargs):
        raise AssertionError('measured again')

    monkeypatch.setattr(lt, '_measure_layer', fail)
    monkeypatch.setattr(lt, '_model_ms', fail)
    again = lt.latency_table(resnet18, X, threads=1, points=2,
                             budget_s=0.01, cache=str(tmp_path))
    assert again == table
    # another thread count is another machine: measured again
    with pytest.raises(AssertionError, match='measured again'):
        lt.latency_table(resnet18, X, threads=2, points=2, budget_s=0.01,
                         cache=str(tmp_path))


def test_bad_points_are_named(resnet18, tmp_path):
    with pytest.raises(ValueError, match='`points`'):
        lt.latency_table(resnet18, X, points=1, cache=str(tmp_path))


def test_busy_tables_warn_and_are_measured_again_when_quiet(
        resnet18, tmp_path, monkeypatch):
    cores = lt.machine_load()[1]
    busy_load = 2 * lt.BUSY_LOAD * cores
    monkeypatch.setattr(lt, 'machine_load', lambda: (busy_load, cores))
    with pytest.warns(UserWarning, match='the machine is busy'):
        table = lt.latency_table(resnet18, X, threads=1, points=2,
                                 budget_s=0.01, cache=str(tmp_path))
    assert table['load'] == dict(max=busy_load, cores=cores, busy=True)
    # still busy: the busy entries are what there is, nothing is measured

    def fail(*args, **kwargs):
        raise AssertionError('measured again')

    monkeypatch.setattr(lt, '_measure_layer', fail)
    monkeypatch.setattr(lt, '_model_ms', fail)
    assert lt.latency_table(resnet18, X, threads=1, points=2,
                            budget_s=0.01, cache=str(tmp_path)) == table
    # quiet now: every busy entry is measured again, the model too
    monkeypatch.undo()
    measured = []
    real_layer, real_model = lt._measure_layer, lt._model_ms

    def count_layer(layer, *args):
        measured.append(layer['param'])
        return real_layer(layer, *args)

    def count_model(*args):
        measured.append('model')
        return real_model(*args)

    monkeypatch.setattr(lt, 'machine_load', lambda: (0.0, cores))
    monkeypatch.setattr(lt, '_measure_layer', count_layer)
    monkeypatch.setattr(lt, '_model_ms', count_model)
    quiet = lt.latency_table(resnet18, X, threads=1, points=2,
                             budget_s=0.01, cache=str(tmp_path))
    shapes = {lt._key(lt._signature(
        {k: v for k, v in layer.items() if k != 'ms'}))
        for layer in table['layers']}
    assert len(measured) == len(shapes) + 1 and 'model' in measured
    assert quiet['load'] == dict(max=0.0, cores=cores, busy=False)
    # and the quiet entries are kept from then on
    measured.clear()
    lt.latency_table(resnet18, X, threads=1, points=2, budget_s=0.01,
                     cache=str(tmp_path))
    assert measured == []


def neck_only(model, inputs):
    """A forward override that deploys the backbone alone."""
    return model.backbone(inputs)


def test_table_measures_what_the_forward_deploys(resnet18, tmp_path):
    # what a detector's CPDHook(forward=...) deploys: the layers it calls,
    # and the whole model's time cached apart from tensor mode's
    table = lt.latency_table(resnet18, X, threads=1, points=2,
                             budget_s=0.01, cache=str(tmp_path),
                             forward=neck_only)
    backbone = {
        f'backbone.{n}.weight'
        for n, m in resnet18.backbone.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    }
    assert {layer['param'] for layer in table['layers']} == backbone
    with open(table['cache']) as f:
        assert len(json.load(f)['models']) == 1
    whole = lt.latency_table(resnet18, X, threads=1, points=2,
                             budget_s=0.01, cache=str(tmp_path))
    assert 'head.fc.weight' in {layer['param'] for layer in whole['layers']}
    with open(whole['cache']) as f:
        assert len(json.load(f)['models']) == 2
    # by import path, as a text config names it: the same table
    again = lt.latency_table(resnet18, X, threads=1, points=2,
                             budget_s=0.01, cache=str(tmp_path),
                             forward=f'{__name__}.neck_only')
    assert [e['param'] for e in again['layers']] == \
        [e['param'] for e in table['layers']]
