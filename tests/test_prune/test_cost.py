import pytest

from mmcpd.prune.cost import CostModel
from .toy import ToyNet, toy_groups, toy_macs


def _numel(model):
    return sum(p.numel() for p in model.parameters())


def _macs(model, size=8):
    macs = toy_macs(model, size)
    return sum(p.numel() * macs[n] for n, p in model.named_parameters())


def test_totals_equal_the_smaller_model():
    model = ToyNet(6, 8)
    shapes = {n: p.shape for n, p in model.named_parameters()}
    groups = toy_groups(model)
    removed = {0: [0, 3], 1: [1, 2, 7]}
    params = CostModel(shapes, groups, 'params')
    flops = CostModel(shapes, groups, 'flops', toy_macs(model))
    small = ToyNet(4, 5)
    assert params.total() == _numel(model)
    assert params.total(removed) == _numel(small)
    assert flops.total(removed) == _macs(small)


def test_unit_costs_count_every_member():
    model = ToyNet(6, 8)
    shapes = {n: p.shape for n, p in model.named_parameters()}
    cost = CostModel(shapes, toy_groups(model), 'params')
    # a conv1 channel: 3*9 in conv1, 2 in bn1, 8*9 in conv2
    assert cost.unit_costs()[0][0].item() == 27 + 2 + 72
    # after removing 3 channels of group 1, conv2 rows shrink
    assert cost.unit_costs({1: [0, 1, 2]})[0][0].item() == 27 + 2 + 45


def test_bad_metric_is_named():
    with pytest.raises(ValueError, match='`metric`'):
        CostModel({}, (), 'latency')
