import pytest
import torch
from torch import nn

from mmcpd.prune.surgery.dead import DeadUnits
from .toy import ToyNet, toy_groups

REMOVED = {0: [1, 4], 1: [0, 5, 6]}


def _dead_values(model, groups, removed):
    tensors = dict(model.named_parameters())
    tensors.update(model.named_buffers())
    for g in groups:
        for m in g.members:
            index = torch.tensor(
                [i for u in removed.get(g.id, ()) for i in m.units[u]],
                dtype=torch.long)
            if len(index):
                yield m.name, tensors[m.name], m.dim, index


def _small_copy(model, removed, act):
    """ToyNet of the kept widths with the kept weights (by hand)."""
    keep1 = [c for c in range(6) if c not in removed[0]]
    keep2 = [c for c in range(8) if c not in removed[1]]
    small = ToyNet(len(keep1), len(keep2), act=act)
    with torch.no_grad():
        small.conv1.weight.copy_(model.conv1.weight[keep1])
        small.conv2.weight.copy_(model.conv2.weight[keep2][:, keep1])
        for bn, keep in (('bn1', keep1), ('bn2', keep2)):
            for n in ('weight', 'bias', 'running_mean', 'running_var'):
                getattr(getattr(small, bn), n).copy_(
                    getattr(getattr(model, bn), n)[keep])
        small.fc.weight.copy_(model.fc.weight[:, keep2])
        small.fc.bias.copy_(model.fc.bias)
    return small


@pytest.mark.parametrize('act', ['relu', 'sigmoid'])
@pytest.mark.parametrize('optim', [
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2),
    lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=1e-2),
])
def test_masked_training_keeps_units_dead_and_equals_small_model(
        optim, act):
    torch.manual_seed(0)
    model = ToyNet(act=act)
    groups = toy_groups(model)
    opt = optim(model.parameters())
    # some steps before pruning, so that the optimizer has state
    for _ in range(2):
        loss = model(torch.randn(4, 3, 8, 8)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    dead = DeadUnits(model, groups, REMOVED)
    dead.zero_tensors()
    dead.zero_optimizer_state(opt)
    # what CPDHook does: zero gradients before every step; state is left
    # alone and must stay zero by itself
    opt.register_step_pre_hook(lambda *a: dead.zero_grads())
    for _ in range(5):
        loss = model(torch.randn(4, 3, 8, 8)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for name, tensor, dim, index in _dead_values(model, groups, REMOVED):
        assert tensor.index_select(dim, index).abs().max() == 0, name
        for value in opt.state.get(tensor, {}).values():
            if torch.is_tensor(value) and value.shape == tensor.shape:
                assert value.index_select(dim, index).abs().max() == 0
    model.eval()
    small = _small_copy(model, REMOVED, act).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x), small(x), atol=1e-6,
                                   rtol=1e-5)


def test_without_gradient_zeroing_units_come_back():
    # the reason zero_grads exists: a removed channel through a sigmoid
    # outputs 0.5, so the next conv's zeroed input weights get gradients
    # and would revive
    torch.manual_seed(0)
    model = ToyNet(act='sigmoid')
    groups = toy_groups(model)
    DeadUnits(model, groups, REMOVED).zero_tensors()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    nn.functional.cross_entropy(model(torch.randn(4, 3, 8, 8)),
                                torch.tensor([0, 1, 2, 0])).backward()
    opt.step()
    assert model.conv2.weight[:, REMOVED[0]].abs().max() > 0


def test_unknown_member_is_named():
    model = ToyNet()
    groups = toy_groups(ToyNet())
    del model.fc
    with pytest.raises(KeyError, match='fc.weight'):
        DeadUnits(model, groups, {1: [0]})
