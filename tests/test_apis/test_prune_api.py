"""mmcpd.prune in one shot: per-group ratio or a FLOPs target, on ResNet-18."""
import copy

import pytest
import torch
from torch import nn

import mmcpd
from mmcpd.apis import build_model_from_cfg
from mmcpd.deploy import model_complexity
from .conftest import RESNET18, small_config

X = torch.randn(1, 3, 32, 32)


@pytest.fixture(scope='module')
def resnet18():
    torch.manual_seed(0)
    model = build_model_from_cfg(small_config(RESNET18)).eval()
    return model, mmcpd.comb_model(model, X)


def _copy(model):
    return copy.deepcopy(model)


def _widths(model):
    return [m.out_channels for m in model.modules()
            if isinstance(m, nn.Conv2d)]


def test_flops_target_removes_that_much_in_rounded_widths(resnet18):
    model, result = resnet18
    pruned = _copy(model)
    spec, _ = mmcpd.prune_model(
        pruned, X, target=0.5, round_to=8, min_channels=8, result=result)
    before = model_complexity(model, X)['flops']
    after = model_complexity(pruned, X)['flops']
    # the cost model counts the same multiply-adds as mmengine's counter
    assert 0.5 <= 1 - after / before <= 0.6
    assert all(w % 8 == 0 for w in _widths(pruned))
    # units are ranked over all groups: widths are not cut uniformly
    ratios = {
        round(a / b, 2)
        for a, b in zip(_widths(pruned), _widths(model)) if a != b
    }
    assert len(ratios) > 1
    assert spec.to_dict() == type(spec).from_dict(spec.to_dict()).to_dict()
    assert pruned(X).shape == model(X).shape


def _written(model, result):
    """Activation elements the pruned convs and linears write."""
    params = dict(model.named_parameters())
    return sum(params[name].shape[dim] * n
               for name, (dim, n) in result.channel_acts.items())


def test_ranking_by_latency_keeps_flops_and_cuts_activations(resnet18):
    model, result = resnet18
    by_flops, by_latency = _copy(model), _copy(model)
    mmcpd.prune_model(by_flops, X, target=0.5, round_to=8, result=result)
    mmcpd.prune_model(
        by_latency, X, target=0.5, round_to=8, rank_by='latency_proxy',
        act_weight=256.0, result=result)
    before = model_complexity(model, X)['flops']
    for pruned in (by_flops, by_latency):
        assert 0.5 <= 1 - model_complexity(pruned, X)['flops'] / before < 0.6
    # the same FLOPs gone, but fewer activation elements left to write
    assert _written(by_latency, result) < _written(by_flops, result)
    assert _widths(by_latency) != _widths(by_flops)


def test_ratio_prunes_every_group_alike(resnet18):
    model, result = resnet18
    pruned = _copy(model)
    mmcpd.prune_model(pruned, X, 0.25, result=result)
    ratios = {
        round(a / b, 2)
        for a, b in zip(_widths(pruned), _widths(model)) if a != b
    }
    assert ratios == {0.75}


def test_bad_amounts_are_named(resnet18):
    model, result = resnet18
    with pytest.raises(ValueError, match='one of `ratio`'):
        mmcpd.prune_model(_copy(model), X, 0.3, target=0.5, result=result)
    with pytest.raises(ValueError, match='one of `ratio`'):
        mmcpd.prune_model(_copy(model), X, result=result)
    with pytest.raises(ValueError, match='`target` should be in'):
        mmcpd.prune_model(_copy(model), X, target=1.5, result=result)
    with pytest.raises(ValueError, match='`rank_by` should be None or'):
        mmcpd.prune_model(_copy(model), X, target=0.5, rank_by='energy',
                          result=result)
    with pytest.raises(ValueError, match='cannot be reached'):
        mmcpd.prune_model(
            _copy(model), X, target=0.95, max_ratio=0.5, result=result)
