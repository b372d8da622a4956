"""Pruner: one selection for both modes; the optimizer follows a cut."""
import copy

import pytest
import torch

from mmcpd.comb import CombResult
from mmcpd.prune.importance import MagnitudeImportance
from mmcpd.prune.pruner import Pruner
from mmcpd.prune.surgery.verify import randomize_model
from .toy import ToyNet, toy_groups


def _setup(shrink):
    torch.manual_seed(0)
    model = randomize_model(ToyNet(c1=8, c2=12), seed=3)
    pruner = Pruner(model, CombResult(toy_groups(model)),
                    MagnitudeImportance(), shrink=shrink)
    return model, pruner


def _train_step(model, optimizer, seed, dead=None):
    """One step; with masks, what CPDHook does around the optimizer step."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 3, 8, 8, generator=gen)
    y = torch.randint(0, 3, (4, ), generator=gen)
    optimizer.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    if dead:
        dead.zero_grads()
    optimizer.step()
    if dead:
        dead.zero_tensors()
    return float(loss)


@pytest.mark.parametrize('optim', [
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3),
    lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
    lambda p: torch.optim.Adam(p, lr=1e-2, amsgrad=True),
])
def test_modes_cut_the_same_units_and_train_alike(optim):
    masked, p_mask = _setup('mask')
    cut, p_cut = _setup('physical')
    opt_m, opt_c = optim(masked.parameters()), optim(cut.parameters())
    lr_of = {id(g): g['lr'] for g in opt_c.param_groups}
    for step, target in enumerate((0.3, 0.6)):
        for it in range(2):
            a = _train_step(masked, opt_m, 10 * step + it, p_mask.dead)
            b = _train_step(cut, opt_c, 10 * step + it)
            assert b == pytest.approx(a, rel=1e-5)
        new_m, new_c = p_mask.step(target), p_cut.step(target)
        assert new_m == new_c != {}
        # a gradient left over (accumulation) is cut with its parameter
        replaced = p_cut.apply(cut, new_c, [opt_c])
        p_mask.apply(masked, new_m, [opt_m])
        cut_params = [new for new, _ in replaced.values()
                      if isinstance(new, torch.nn.Parameter)]
        assert cut_params and all(
            new.grad is not None and new.grad.shape == new.shape
            for new in cut_params)
    assert p_cut.removed == p_mask.removed
    assert [id(g) for g in opt_c.param_groups] == list(lr_of)
    params = {id(p) for g in opt_c.param_groups for p in g['params']}
    assert params == {id(p) for p in cut.parameters()}
    x = torch.randn(2, 3, 8, 8)
    for it in range(2):  # the cut model steps as the masked one
        a = _train_step(masked, opt_m, 100 + it, p_mask.dead)
        b = _train_step(cut, opt_c, 100 + it)
        assert b == pytest.approx(a, rel=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(cut.eval()(x), masked.eval()(x),
                                   rtol=1e-4, atol=1e-5)
    small, spec = p_mask.small(masked)
    assert spec.to_dict() == p_cut.spec(cut).to_dict()
    assert {k: v.shape for k, v in small.state_dict().items()} == {
        k: v.shape for k, v in cut.state_dict().items()}


def test_state_dict_round_trip_rebuilds_the_cut_model():
    cut, pruner = _setup('physical')
    pruner.apply(cut, pruner.step(0.5))
    pruner.apply(cut, pruner.step(0.7))
    state = copy.deepcopy(pruner.state_dict())
    fresh, again = _setup('physical')
    full = {k: v.shape for k, v in fresh.state_dict().items()}
    # what is left to cut, through apply (optimizers and copies follow)
    pending = again.load_state_dict(state)
    assert pending == pruner.removed and again.removed == {}
    assert {k: v.shape for k, v in fresh.state_dict().items()} == full
    again.apply(fresh, pending)
    assert again.removed == pruner.removed
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {
        k: v.shape for k, v in cut.state_dict().items()}
    assert again.spec(fresh).to_dict() == pruner.spec(cut).to_dict()
    # the importance state comes back after the cut re-indexed it
    assert again.state_dict()['importance'] == state['importance']


def test_bad_shrink_names_the_choices():
    model = ToyNet()
    with pytest.raises(ValueError, match="`shrink` should be one of"):
        Pruner(model, CombResult(toy_groups(model)), MagnitudeImportance(),
               shrink='cut')


def test_session_schedule_needs_an_end():
    from mmcpd.prune.session import PruneSession
    from mmcpd.prune.settings import PruneSettings
    model = ToyNet()
    session = PruneSession(PruneSettings(0.5, importance='magnitude'),
                           dict(interval=2))
    session.start(model, CombResult(toy_groups(model)))
    with pytest.raises(ValueError, match='neither `end` nor `num_steps`'):
        session.begin()
    session.begin(max_iters=20)  # END_FRACTION: a quarter of them
    assert (session.schedule.start, session.schedule.end) == (0, 4)
    session.begin(max_iters=4)  # at least one step
    assert (session.schedule.start, session.schedule.end) == (0, 2)
