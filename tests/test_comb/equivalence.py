"""Shared oracle of the comb tests: masked == pruned == rebuilt."""
import copy

import torch

from mmcpd.prune.surgery.mask import exact_norms, zero_units
from mmcpd.prune.surgery.physical import prune_units
from mmcpd.prune.spec import apply_spec
from mmcpd.prune.surgery.verify import \
    random_units as random_removal  # noqa: F401
from mmcpd.prune.surgery.verify import \
    randomize_model as randomise  # noqa: F401
from mmcpd.prune.surgery.verify import same_random


@torch.no_grad()
def flat(value):
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in flat(v)]
    return []


def assert_masked_equals_pruned(model, result, x, removed, forward=None,
                                rtol=1e-4):
    """Masked, pruned and spec-rebuilt models give the same outputs (each
    forward from the same random state, for models that draw in eval)."""
    run = forward or (lambda m, i: m(i))

    def forward(m, i):
        with same_random():
            return run(m, i)

    model.eval()
    with torch.no_grad():
        original = forward(model, x)
        masked = copy.deepcopy(model)
        zero_units(masked, result, removed)
        with exact_norms(masked, result, removed):
            expected = forward(masked, x)
        pruned = copy.deepcopy(model)
        spec = prune_units(pruned, result, removed)
        got = forward(pruned, x)
        rebuilt = apply_spec(copy.deepcopy(model), spec)
        rebuilt.load_state_dict(pruned.state_dict())
        rebuilt.eval()  # as a runner does after loading: caches refresh
        again = forward(rebuilt, x)
    for o, e, g, a in zip(flat(original), flat(expected), flat(got),
                          flat(again)):
        assert g.shape == o.shape, 'pruning changed the output shape'
        scale = e.abs().max() + 1e-8
        assert ((e - g).abs().max() / scale) < rtol
        assert torch.equal(g, a), 'rebuilt from spec differs from pruned'
    before = sum(p.numel() for p in model.parameters())
    after = sum(p.numel() for p in pruned.parameters())
    if removed:
        assert after < before
    return pruned, spec


def assert_flops_match(model, result, x, seeds=2, rel=1e-6):
    """The comb's FLOPs (``model_cost``) equal mmengine's counter
    (``model_complexity``) on ``model`` and after ``seeds`` random cuts of
    40% of every prunable group."""
    import pytest

    from mmcpd.deploy import model_complexity
    from mmcpd.prune.cost import model_cost
    from mmcpd.prune.surgery.verify import random_units
    cost = model_cost(model, result, 'flops')
    assert cost.total() == pytest.approx(
        model_complexity(model, x)['flops'], rel=rel)
    for seed in range(seeds):
        removed = random_units(result, 0.4, seed=seed)
        small = copy.deepcopy(model)
        prune_units(small, result, removed)
        assert cost.total(removed) == pytest.approx(
            model_complexity(small, x)['flops'], rel=rel)
    return cost
