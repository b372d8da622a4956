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


def test_latency_adds_the_written_activations_of_each_channel():
    model = ToyNet(6, 8)
    shapes = {n: p.shape for n, p in model.named_parameters()}
    groups = toy_groups(model)
    # at 8x8, every output channel of conv1 and conv2 writes 64 elements;
    # the classifier's 3 outputs are one element each
    acts = {'conv1.weight': [0, 64], 'conv2.weight': [0, 64],
            'fc.weight': [0, 1]}
    flops = CostModel(shapes, groups, 'flops', toy_macs(model))
    latency = CostModel(shapes, groups, 'latency', toy_macs(model), acts,
                        act_weight=2.0)
    removed = {0: [0, 3], 1: [1, 2, 7]}
    # ToyNet(4, 5) is left: 4 + 5 channels write 64 elements, 3 logits 1
    assert latency.total(removed) == flops.total(removed) + 2.0 * (
        (4 + 5) * 64 + 3)
    assert latency.total() == flops.total() + 2.0 * ((6 + 8) * 64 + 3)
    # a channel of either group saves its 64 writes on top of its MACs
    for gid in (0, 1):
        extra = latency.unit_costs()[gid] - flops.unit_costs()[gid]
        assert extra.tolist() == [2.0 * 64] * len(extra)
    # beta = 0 is the FLOPs
    zero = CostModel(shapes, groups, 'latency', toy_macs(model), acts, 0.0)
    assert zero.total(removed) == flops.total(removed)


def test_bad_metric_is_named():
    with pytest.raises(ValueError, match='`metric`'):
        CostModel({}, (), 'energy')
    with pytest.raises(ValueError, match='needs the comb'):
        CostModel({}, (), 'latency')
    with pytest.raises(ValueError, match='`act_weight`'):
        CostModel({}, (), 'latency', {}, {}, act_weight=-1.0)
