"""Ops whose outputs reach no model output cost nothing (issue 25, item 4):
mmengine's counter (a JIT trace) drops dead code, and so does the comb's
FLOP bookkeeping, while its groups stay as they were."""

import torch
from torch import nn

from mmcpd.apis import build_model_from_cfg
from mmcpd.apis.pruning import comb_model
from mmcpd.comb import trace_groups
from mmcpd.comb.labels import LabelGraph
from mmcpd.comb.liveness import Liveness
from mmcpd.comb.trace import trace
from mmcpd.deploy import model_complexity
from mmcpd.prune.cost import model_cost
from mmcpd.prune.surgery.verify import randomize_model
from mmcpd.utils.config import load_config
from tests.test_prune.test_cost import check_flops_match_mmengine


class DeadConv(nn.Module):
    """``dead`` (a conv, its norm and an in-place ReLU) runs on the
    features and is thrown away."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.live = nn.Conv2d(8, 8, 3, padding=1)
        self.dead = nn.Conv2d(8, 16, 3, padding=1)
        self.dead_bn = nn.BatchNorm2d(16)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        unused = torch.relu_(self.dead_bn(self.dead(x)))  # noqa: F841
        x = self.live(x)
        return self.head(x.mean((2, 3)))


class WrittenInPlace(nn.Module):
    """Branches that reach the output only by writing into a buffer in
    place (``__setitem__``, ``copy_`` into a view): they are live."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Conv2d(8, 4, 3, padding=1)
        self.b = nn.Conv2d(8, 4, 1)
        self.dead = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        x = self.stem(x)
        out = x.new_zeros(x.shape[0], 8, x.shape[2], x.shape[3])
        out[:, :4] = self.a(x)
        out[:, 4:].copy_(self.b(x))
        scratch = x.new_zeros(x.shape[0], 4, x.shape[2], x.shape[3])
        scratch[:] = self.dead(x)  # written into a buffer nobody reads
        return out


def _comb_flops(model, x, result=None):
    result = result or trace_groups(model, x)
    return model_cost(model, result, 'flops').total(), result


def _groups(result):
    return [g.to_dict() for g in result.groups]


def test_dead_conv_costs_nothing_as_in_mmengine():
    torch.manual_seed(0)
    model = DeadConv().eval()
    x = torch.randn(1, 3, 16, 16)
    flops, result = _comb_flops(model, x)
    assert flops == model_complexity(model, x)['flops']
    assert 'dead.weight' not in result.param_macs
    assert 'dead.weight' not in result.channel_acts
    assert not [op for op in result.op_macs if op.site.endswith('@dead_bn')]
    assert result.param_macs['live.weight'] == 16 * 16
    # the same groups as when the dead conv is counted: it still ties its
    # input channels to the stem's
    assert any({m.name
                for m in g.members} >= {'stem.weight', 'dead.weight'}
               for g in result.groups)
    # a conv that costs nothing: removing its channels saves nothing
    cost = model_cost(model, result, 'flops')
    dead = next(g for g in result.prunable
                if any(m.name == 'dead_bn.weight' for m in g.members))
    assert cost.unit_costs()[dead.id].tolist() == [0.0] * dead.channels


def test_writes_into_a_returned_buffer_are_live():
    torch.manual_seed(0)
    model = WrittenInPlace().eval()
    x = torch.randn(1, 3, 8, 8)
    flops, result = _comb_flops(model, x)
    assert flops == model_complexity(model, x)['flops']
    assert {'a.weight', 'b.weight', 'stem.weight'} <= set(result.param_macs)
    assert 'dead.weight' not in result.param_macs


def test_without_a_dead_branch_nothing_changes():
    """Every cost is kept where every op reaches the output."""

    class Net(nn.Module):

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)
            self.bn = nn.BatchNorm2d(8)

        def forward(self, x):
            return self.bn(self.conv(x)).relu_()

    x = torch.randn(1, 3, 8, 8)
    graph, _ = trace(Net(), x)
    assert graph.dead == []
    assert graph.param_macs == {'conv.weight': 36}
    assert [site for site, _, _ in graph.op_macs] == ['batch_norm@bn']


def test_liveness_unknown_where_outputs_are_not_plain():
    flow = Liveness(nn.Identity(), torch.zeros(1))
    assert flow.live(object()) is None
    assert flow.live([]) is None


def test_costs_outside_ops_are_kept():
    graph = LabelGraph()
    graph.current_op = 0
    graph.add_param_macs('a', 2)
    graph.current_op = None
    graph.add_param_macs('b', 3)
    assert graph.drop_dead(set()) == ['`a`']
    assert graph.param_macs == {'b': 3}


YOLO = 'mmdet::yolo/yolov3_mobilenetv2_8xb24-320-300e_coco.py'


def test_yolov3_mobilenetv2_matches_mmengine_before_and_after_pruning():
    """MobileNetV2's ``conv2`` (320 -> 1280 channels) runs and is never
    used: it used to add 2.5% to the comb's FLOPs."""
    import mmdet.models  # noqa: F401  (tools/install.sh installs mmdet)
    torch.manual_seed(0)
    model = randomize_model(build_model_from_cfg(load_config(YOLO)))
    x = torch.randn(1, 3, 128, 128)
    result = comb_model(model, x)
    assert 'backbone.conv2.conv.weight' not in result.param_macs
    # its channels still group as before: conv2's input with layer7's
    # output, its output on their own
    assert any({m.name
                for m in g.members} >= {
                    'backbone.layer7.0.linear_conv.conv.weight',
                    'backbone.conv2.conv.weight'
                } for g in result.groups)
    check_flops_match_mmengine(model, x, result)
