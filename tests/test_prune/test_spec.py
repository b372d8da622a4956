"""A pruned spec that does not fit itself or the model is refused, naming the
module and both values, before the model changes."""
import copy
import json

import pytest
import torch
from torch import nn

import mmcpd
from mmcpd.prune.spec import PrunedSpec, apply_spec
from mmcpd.prune.spec.check import check_applied
from mmcpd.prune.surgery.verify import randomize_model


class Net(nn.Module):
    """conv (biased) - BN - depthwise conv - LayerNorm - Linear, with a
    head whose weight is shared by a second Linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.ln = nn.LayerNorm(16)
        self.fc = nn.Linear(16, 12)
        self.head = nn.Linear(12, 5)
        self.head2 = nn.Linear(12, 5)
        self.head2.weight = self.head.weight

    def forward(self, x):
        x = self.dw(self.bn(self.conv(x)).relu()).relu().mean((2, 3))
        x = self.fc(self.ln(x)).relu()
        return self.head(x) + self.head2(x)


@pytest.fixture(scope='module')
def pruned():
    """A random Net, its copy pruned by mmcpd and the spec (JSON round
    trip), with units of every group removed."""
    torch.manual_seed(0)
    original = randomize_model(Net(), seed=3).eval()
    small = copy.deepcopy(original)
    spec, _ = mmcpd.prune_model(
        small, torch.randn(1, 3, 8, 8), ratio=0.25, importance='random',
        round_to=1)
    return original, small.eval(), PrunedSpec.from_dict(
        PrunedSpec.from_dict(spec.to_dict()).to_dict())


def test_spec_of_pruning_applies_and_computes_the_same(pruned):
    original, small, spec = pruned
    assert spec.attrs['conv'] == dict(in_channels=3, out_channels=12)
    assert spec.attrs['dw']['groups'] == 12
    model = apply_spec(Net(), spec)
    model.load_state_dict(small.state_dict())
    assert model.head.weight is model.head2.weight
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), small(x))
    assert model.fc.out_features == 9 and original.fc.out_features == 12


def _edit(spec: PrunedSpec, module: str, attr: str, value) -> PrunedSpec:
    data = copy.deepcopy(spec.to_dict())
    if attr in ('weight', 'bias', 'running_mean', 'running_var'):
        data['shapes'][f'{module}.{attr}'] = value
    else:
        data['attrs'].setdefault(module, {})[attr] = value
    return PrunedSpec.from_dict(data)


@pytest.mark.parametrize(
    'module,attr,value,needles',
    [
        # the case: an out_channels edited to a larger value
        ('conv', 'out_channels', 14,
         ['`conv.out_channels` is 14', '[12, 3, 3, 3]', 'give 12']),
        # larger than the model: pruning never grows a layer
        ('conv', 'out_channels', 20, ['`conv.out_channels`', '20', '16']),
        ('fc', 'in_features', 10, ['`fc.in_features` is 10', 'give 12']),
        ('bn', 'num_features', 11, ['`bn.num_features` is 11', 'give 12']),
        ('ln', 'normalized_shape', (10, ),
         ['`ln.normalized_shape` is (10,)', 'give (12,)']),
        ('dw', 'groups', 6, ['`dw.in_channels` is 12', 'groups` = 6']),
        # a tensor of a layer that disagrees with its widths
        ('conv', 'bias', [13], ['`conv.bias` has shape [13]', 'need [12]']),
        ('bn', 'running_var', [10], ['`bn.running_var`', '[10]', '[12]']),
        # a tensor whose rank changes
        ('fc', 'weight', [9, 12, 1], ['`fc.weight`', '2 dims', '3']),
        # an attribute of another kind or one the module does not have
        ('ln', 'normalized_shape', 12, ['`ln.normalized_shape`', '(16,)',
                                        '12']),
        ('fc', 'out_channels', 9, ['`fc`', 'Linear', '`out_channels`']),
    ])
def test_edited_spec_is_refused_and_named(pruned, module, attr, value,
                                          needles):
    _, _, spec = pruned
    model = Net()
    before = {k: v.shape for k, v in model.state_dict().items()}
    with pytest.raises(ValueError) as info:
        apply_spec(model, _edit(spec, module, attr, value))
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))
    # nothing changed
    assert {k: v.shape for k, v in model.state_dict().items()} == before
    assert model.conv.out_channels == 16


def test_spec_of_another_model_is_refused(pruned):
    _, _, spec = pruned
    data = spec.to_dict()
    data['shapes']['stem.weight'] = [8, 3, 3, 3]
    with pytest.raises(ValueError, match='`stem.weight`'):
        apply_spec(Net(), PrunedSpec.from_dict(data))
    data = spec.to_dict()
    data['attrs']['blocks.0'] = dict(num_heads=2)
    with pytest.raises(ValueError, match='`blocks.0`'):
        apply_spec(Net(), PrunedSpec.from_dict(data))


def test_tied_tensors_get_one_shape(pruned):
    _, _, spec = pruned
    # both Linears that share the weight follow it
    assert spec.attrs['head2'] == spec.attrs['head'] == dict(
        in_features=9, out_features=5)
    data = spec.to_dict()
    del data['attrs']['head2']
    with pytest.raises(ValueError) as info:
        apply_spec(Net(), PrunedSpec.from_dict(data))
    assert '`head2.in_features` is 12' in str(info.value)
    assert 'give 9' in str(info.value)
    data = spec.to_dict()
    data['shapes']['head.weight'] = [5, 9]
    data['shapes']['head2.weight'] = [5, 8]
    with pytest.raises(ValueError) as info:
        apply_spec(Net(), PrunedSpec.from_dict(data))
    message = str(info.value)
    assert '`head.weight` and `head2.weight`' in message
    assert '[5, 9]' in message and '[5, 8]' in message


@pytest.mark.parametrize('data,needle', [
    (dict(shapes={'conv.weight': [12, -3, 3, 3]}), '`conv.weight`'),
    (dict(shapes={'conv.weight': [12, 'a', 3, 3]}), '`conv.weight`'),
    (dict(shapes={'conv.bias': []}), '`conv.bias`'),
    (dict(shapes={}, attrs={'conv': {'out_channels': 0}}),
     '`conv.out_channels`'),
    (dict(shapes={}, attrs={'conv': {'out_channels': 1.5}}),
     '`conv.out_channels`'),
    (dict(shapes={}, attrs={'conv': 12}), '`attrs`'),
])
def test_damaged_values_are_refused_when_read(data, needle):
    with pytest.raises(ValueError, match=needle):
        PrunedSpec.from_dict(data)


def test_attention_heads_follow_the_spec():
    torch.manual_seed(0)
    attn = nn.MultiheadAttention(8, 2)
    spec = PrunedSpec(
        shapes={
            'in_proj_weight': [12, 4],
            'in_proj_bias': [12],
            'out_proj.weight': [8, 4],
        },
        attrs={
            '': dict(num_heads=1, embed_dim=4, kdim=4, vdim=4, head_dim=4),
            'out_proj': dict(in_features=4, out_features=8),
        })
    small = apply_spec(copy.deepcopy(attn), spec)  # consistent: accepted
    q = torch.randn(3, 1, 4)
    assert small(q, q, q)[0].shape == (3, 1, 8)
    bad = PrunedSpec(spec.shapes, copy.deepcopy(spec.attrs))
    bad.attrs[''].update(num_heads=2)
    with pytest.raises(ValueError) as info:
        apply_spec(copy.deepcopy(attn), bad)
    message = str(info.value)
    assert '`head_dim` is 4' in message and '`num_heads` = 2' in message
    bad = PrunedSpec(dict(spec.shapes, in_proj_bias=[24]), spec.attrs)
    with pytest.raises(ValueError, match=r'`in_proj_bias` has shape \[24\]'):
        apply_spec(copy.deepcopy(attn), bad)


def test_applied_model_is_checked_tensor_by_tensor(pruned):
    _, _, spec = pruned
    model = apply_spec(Net(), spec)
    check_applied(model, spec)
    model.fc.weight = nn.Parameter(torch.zeros(12, 16))
    with pytest.raises(ValueError) as info:
        check_applied(model, spec)
    assert '`fc.weight` has shape [12, 16]' in str(info.value)
    assert str(spec.shapes['fc.weight']) in str(info.value)


class AliasedModule(nn.Module):
    """One conv held under two names (as ANN's key and query projections
    are): ``named_modules()`` lists it once, its spec attributes too."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.key = nn.Conv2d(8, 4, 1)
        self.query = self.key

    def forward(self, x):
        x = self.conv1(x).relu()
        return self.key(x) * self.query(x)


def test_a_module_held_under_two_names_rebuilds():
    model = randomize_model(AliasedModule()).eval()
    x = torch.randn(1, 3, 8, 8)
    small = copy.deepcopy(model)
    spec, result = mmcpd.prune_model(small, x, ratio=0.5, round_to=1)
    assert small.query.in_channels == 4
    rebuilt = apply_spec(copy.deepcopy(model),
                         PrunedSpec.from_dict(json.loads(spec.to_json())))
    rebuilt.load_state_dict(small.state_dict())
    assert rebuilt.query is rebuilt.key and rebuilt.query.in_channels == 4
    torch.testing.assert_close(rebuilt(x), small(x))
