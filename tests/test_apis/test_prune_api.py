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
    return model, mmcpd.comb(model, X)


def _copy(model):
    return copy.deepcopy(model)


def _widths(model):
    return [m.out_channels for m in model.modules()
            if isinstance(m, nn.Conv2d)]


def test_flops_target_removes_that_much_in_rounded_widths(resnet18):
    model, result = resnet18
    pruned = _copy(model)
    spec, _ = mmcpd.prune(
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


def test_ratio_prunes_every_group_alike(resnet18):
    model, result = resnet18
    pruned = _copy(model)
    mmcpd.prune(pruned, X, 0.25, result=result)
    ratios = {
        round(a / b, 2)
        for a, b in zip(_widths(pruned), _widths(model)) if a != b
    }
    assert ratios == {0.75}


def test_bad_amounts_are_named(resnet18):
    model, result = resnet18
    with pytest.raises(ValueError, match='one of `ratio`'):
        mmcpd.prune(_copy(model), X, 0.3, target=0.5, result=result)
    with pytest.raises(ValueError, match='one of `ratio`'):
        mmcpd.prune(_copy(model), X, result=result)
    with pytest.raises(ValueError, match='`target` should be in'):
        mmcpd.prune(_copy(model), X, target=1.5, result=result)
    with pytest.raises(ValueError, match='cannot be reached'):
        mmcpd.prune(
            _copy(model), X, target=0.95, max_ratio=0.5, result=result)
