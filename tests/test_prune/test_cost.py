"""The cost the hook steers by, against counts made without the comb.

FLOPs are checked against a by-hand count of a toy net and against
mmengine's counter (:func:`mmcpd.deploy.model_complexity`) on zoo models,
before and after pruning random units: classifiers, attention (fused and
plain), and segmentors with auxiliary heads.
"""
import copy

import pytest
import torch

from mmcpd.apis.pruning import comb_model
from mmcpd.apis import build_model_from_cfg
from mmcpd.comb import trace_groups
from mmcpd.deploy import model_complexity
from mmcpd.prune.cost import CostModel, model_cost
from mmcpd.prune.surgery.physical import prune_units
from mmcpd.prune.surgery.verify import random_units, randomize_model
from mmcpd.utils.config import load_config
from .toy import ToyNet, toy_groups


def _numel(model):
    return sum(p.numel() for p in model.parameters())


def _by_hand_flops(c1, c2, classes=3, size=8):
    """MACs of ToyNet in eval mode, by mmengine's conventions: convs and the
    linear layer one per multiply-add, eval BatchNorm 2 per element."""
    hw = size * size
    conv1 = hw * c1 * 3 * 9
    conv2 = hw * c2 * c1 * 9
    bns = 2 * hw * (c1 + c2)
    fc = c2 * classes
    return conv1 + conv2 + bns + fc


def test_params_and_flops_equal_a_count_by_hand():
    model = ToyNet(6, 8).eval()
    x = torch.randn(1, 3, 8, 8)
    result = trace_groups(model, x)
    removed = {0: [0, 3], 1: [1, 2, 7]}
    # the comb's groups are the hand-built ones
    assert [sorted(m.name for m in g.members) for g in result.prunable] == [
        sorted(m.name for m in g.members) for g in toy_groups(model)
    ]
    params = model_cost(model, result, 'params')
    flops = model_cost(model, result, 'flops')
    assert params.total() == _numel(model)
    assert params.total(removed) == _numel(ToyNet(4, 5))
    assert flops.total() == _by_hand_flops(6, 8)
    assert flops.total(removed) == _by_hand_flops(4, 5)
    # and mmengine's counter agrees
    assert model_complexity(model, x)['flops'] == _by_hand_flops(6, 8)
    assert model_complexity(ToyNet(4, 5).eval(),
                            x)['flops'] == _by_hand_flops(4, 5)


def test_unit_costs_count_every_member():
    model = ToyNet(6, 8)
    shapes = {n: p.shape for n, p in model.named_parameters()}
    cost = CostModel(shapes, toy_groups(model), 'params')
    # a conv1 channel: 3*9 in conv1, 2 in bn1, 8*9 in conv2
    assert cost.unit_costs()[0][0].item() == 27 + 2 + 72
    # after removing 3 channels of group 1, conv2 rows shrink
    assert cost.unit_costs({1: [0, 1, 2]})[0][0].item() == 27 + 2 + 45


def test_unit_costs_are_what_removing_the_unit_saves():
    """For FLOPs with ops without weights (BN, attention) too."""
    model = build_model_from_cfg(
        load_config('mmpretrain::deit/deit-tiny_4xb256_in1k.py'))
    x = torch.randn(1, 3, 32, 32)
    result = comb_model(model, x)
    cost = model_cost(model, result, 'flops')
    removed = random_units(result, 0.3)
    units = cost.unit_costs(removed)
    for group in result.prunable[:4]:
        alive = [u for u in range(group.num_units)
                 if u not in removed.get(group.id, [])]
        u = alive[0]
        more = dict(removed)
        more[group.id] = list(removed.get(group.id, [])) + [u]
        saved = cost.total(removed) - cost.total(more)
        assert units[group.id][u].item() == pytest.approx(saved, rel=1e-9)


def test_latency_adds_the_written_activations_of_each_channel():
    model = ToyNet(6, 8).eval()
    result = trace_groups(model, torch.randn(1, 3, 8, 8))
    flops = model_cost(model, result, 'flops')
    latency = model_cost(model, result, 'latency_proxy', act_weight=2.0)
    removed = {0: [0, 3], 1: [1, 2, 7]}
    # ToyNet(4, 5) is left: 4 + 5 channels write 64 elements, 3 logits 1
    assert latency.total(removed) == flops.total(removed) + 2.0 * (
        (4 + 5) * 64 + 3)
    assert latency.total() == flops.total() + 2.0 * ((6 + 8) * 64 + 3)
    # a channel of either group saves its 64 writes on top of its MACs
    for group in result.prunable:
        extra = (latency.unit_costs()[group.id] -
                 flops.unit_costs()[group.id])
        assert extra.tolist() == [2.0 * 64] * len(extra)
    zero = model_cost(model, result, 'latency_proxy', act_weight=0.0)
    assert zero.total(removed) == flops.total(removed)


ZOO = [
    ('mmpretrain::resnet/resnet18_8xb32_in1k.py', 64),
    ('mmpretrain::mobilenet_v2/mobilenet-v2_8xb32_in1k.py', 64),
    ('mmpretrain::deit/deit-tiny_4xb256_in1k.py', 64),  # fused attention
    ('mmseg::pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py', 96),
    ('mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py', 64),
    # grouped convs keeping other columns per conv group
    ('mmpretrain::shufflenet_v1/shufflenet-v1-1x_16xb64_in1k.py', 64),
]


@pytest.mark.parametrize('config,size', ZOO, ids=[z[0] for z in ZOO])
def test_comb_flops_match_mmengine_before_and_after_pruning(config, size):
    """Within 2% of mmengine's counter on the deployed forward (no
    auxiliary heads), also after removing random units."""
    model = randomize_model(build_model_from_cfg(load_config(config)))
    x = torch.randn(1, 3, size, size)
    check_flops_match_mmengine(model, x, comb_model(model, x))


def check_flops_match_mmengine(model, x, result) -> None:
    """The comb's FLOPs within 2% of mmengine's counter, before and after
    removing random units (40%)."""
    cost = model_cost(model, result, 'flops')
    counted = model_complexity(model, x)['flops']
    assert cost.total() == pytest.approx(counted, rel=0.02)
    removed = random_units(result, 0.4, seed=1)
    pruned = copy.deepcopy(model)
    prune_units(pruned, result, removed)
    counted = model_complexity(pruned, x)['flops']
    assert cost.total(removed) == pytest.approx(counted, rel=0.02)


class TokenMixer(torch.nn.Module):
    """An MLP-Mixer block: the token MLP runs over the channels as rows."""

    def __init__(self, tokens=16, channels=24, hidden=32):
        super().__init__()
        self.embed = torch.nn.Conv2d(3, channels, 2, 2)
        self.norm = torch.nn.LayerNorm(channels)
        self.token_mlp = torch.nn.Sequential(
            torch.nn.Linear(tokens, hidden), torch.nn.GELU(),
            torch.nn.Linear(hidden, tokens))
        self.channel_mlp = torch.nn.Sequential(
            torch.nn.Linear(channels, hidden), torch.nn.GELU(),
            torch.nn.Linear(hidden, channels))
        self.head = torch.nn.Linear(channels, 5)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2)  # B, N, C
        x = x + self.token_mlp(self.norm(x).transpose(1, 2)).transpose(1, 2)
        x = x + self.channel_mlp(self.norm(x))
        return self.head(x.mean(1))


class PartitionPerceptron(torch.nn.Module):
    """RepMLP's partition perceptron (one share set, as in RepMLP-B's
    first stage): the channels are folded into the batch of a 1x1 conv
    over patch vectors and of a 3x3 one."""

    def __init__(self, channels=32, sharesets=1, patch=2):
        super().__init__()
        self.s, self.p = sharesets, patch
        self.embed = torch.nn.Conv2d(3, channels, 2, 2)
        vec = sharesets * patch * patch
        self.fc3 = torch.nn.Conv2d(vec, vec, 1, groups=sharesets,
                                   bias=False)
        self.repconv = torch.nn.Conv2d(sharesets, sharesets, 3, padding=1,
                                       groups=sharesets)
        self.head = torch.nn.Linear(channels, 5)

    def forward(self, x):
        x = self.embed(x)
        b, c, h, w = x.shape
        s, p = self.s, self.p
        parts = x.reshape(b, c, h // p, p, w // p, p)
        parts = parts.permute(0, 2, 4, 1, 3, 5)
        out = self.fc3(parts.reshape(-1, s * p * p, 1, 1))
        out = out.reshape(b, h // p, w // p, c, p, p)
        conv = self.repconv(parts.reshape(-1, s, p, p))
        out = out + conv.reshape(b, h // p, w // p, c, p, p)
        y = x + out.permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)
        return self.head(y.mean((2, 3)))


@pytest.mark.parametrize('make,size', [(TokenMixer, 8),
                                       (PartitionPerceptron, 16)],
                         ids=['linear-rows', 'conv-batch'])
def test_layer_whose_other_dims_carry_channels_costs_less_when_they_go(
        make, size):
    """MLP-Mixer's token MLP runs over the channels as rows; RepMLP's
    partition perceptron folds them into the batch of its convs. Pruning
    the channels removes those layers' MACs too, as mmengine's counter of
    the pruned model says (the comb had counted them fixed: 4.8% too many
    on MLP-Mixer-B, 16% on RepMLP-B)."""
    model = randomize_model(make())
    x = torch.randn(1, 3, size, size)
    result = comb_model(model, x)
    channels = [g for g in result.prunable
                if any(m.name == 'embed.weight' for m in g.members)]
    assert channels, 'the channels should be prunable'
    cost = model_cost(model, result, 'flops')
    assert cost.total() == pytest.approx(
        model_complexity(model, x)['flops'], rel=1e-6)
    for seed in range(3):
        removed = random_units(result, 0.4, seed=seed)
        assert removed.get(channels[0].id)
        pruned = copy.deepcopy(model)
        prune_units(pruned, result, removed)
        assert cost.total(removed) == pytest.approx(
            model_complexity(pruned, x)['flops'], rel=1e-6)


def test_auxiliary_heads_cost_nothing():
    """PSPNet-R18 with its FCN auxiliary head: the auxiliary head is traced
    (its input channels prune with the backbone) but costs nothing, and the
    backbone counts once."""
    cfg = load_config(
        'mmseg::pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py')
    model = build_model_from_cfg(cfg)
    x = torch.randn(1, 3, 64, 64)
    result = comb_model(model, x)
    assert any(m.name.startswith('auxiliary_head.') for g in result.groups
               for m in g.members)
    assert not [n for n in result.param_macs
                if n.startswith('auxiliary_head.')]
    assert not [op.site for op in result.op_macs
                if '@auxiliary_head' in op.site]
    # the stem's first conv (stride 2) writes 32 x 32 outputs, once
    assert result.param_macs['backbone.stem.0.weight'] == 32 * 32


def test_bad_metric_is_named():
    with pytest.raises(ValueError, match='`metric`'):
        CostModel({}, (), 'energy')
    with pytest.raises(ValueError, match='needs the comb'):
        CostModel({}, (), 'latency_proxy')
    with pytest.raises(ValueError, match='`act_weight`'):
        CostModel({}, (), 'latency_proxy', {}, {}, act_weight=-1.0)
