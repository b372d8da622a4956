"""Verification runs in float64: masking that is only nearly exact fails.

The comb's own mistakes must not reach a user: a group whose masked model
differs from the pruned one, even by 1e-5 of the output, is frozen by
verification by itself. The mistake here is the one OCRNet's object
context showed before the comb followed classes through 1x1 convs: the
softmax over classes then counted the removed classes.
"""
import torch

from mmcpd.comb import trace_groups
from mmcpd.comb.handlers import layers
from mmcpd.prune.surgery.verify import (RTOL_FLOAT64, in_float64, try_removal,
                                        verify_groups)
from ..test_comb.equivalence import randomise
from ..test_comb.test_tokens import ObjectContext


def _classes(result):
    group, = [
        g for g in result.groups
        if any(m.name == 'cls.weight' and m.role == 'out' for m in g.members)
    ]
    return group


def test_nearly_exact_masking_fails_verification(monkeypatch):
    # the error (5e-4 of the output) hides under float32's tolerance (1e-3)
    model = randomise(ObjectContext()).eval()
    x = torch.randn(1, 3, 8, 8)
    forward = lambda m, i: m(i)  # noqa: E731
    monkeypatch.setattr(layers, '_positions_kept', lambda *a: [])
    result = trace_groups(model, x, forward_fn=forward)
    classes = _classes(result)
    assert classes.prunable  # the tracer lost the classes: a wrong group
    removal = {classes.id: [0]}
    ok, _ = try_removal(model, result, removal, x, forward, rtol=1e-3)
    assert ok, 'the error should hide under float32 tolerance'
    model64, x64 = in_float64(model, x, forward)
    ok, why = try_removal(model64, result, removal, x64, forward,
                          RTOL_FLOAT64)
    assert not ok and 'differs' in why
    verified = verify_groups(model, result, x, forward)
    assert 'failed verification' in _classes(verified).frozen
    others = [g for g in result.prunable if g.id != classes.id]
    assert others and all(verified.groups[g.id].prunable for g in others)


def test_float64_copy_leaves_the_model():
    model = ObjectContext().eval()
    x = torch.randn(1, 3, 8, 8)
    double, x64 = in_float64(model, x, lambda m, i: m(i))
    assert x64.dtype == torch.float64
    assert next(double.parameters()).dtype == torch.float64
    assert next(model.parameters()).dtype == torch.float32


def test_float32_only_models_verify_in_float32():
    """A model that casts to float32 inside is verified in float32 (a
    ``.float()`` of a float64 tensor no longer casts while verifying:
    ``test_verify_float_cast.py``)."""

    class Casts(torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.a = torch.nn.Conv2d(3, 8, 1)
            self.b = torch.nn.Conv2d(8, 2, 1)

        def forward(self, x):
            f32 = torch.float32
            return self.b(self.a(x).to(f32).to(self.b.weight.dtype)).to(f32)

    model = randomise(Casts()).eval()
    x = torch.randn(1, 3, 4, 4)
    assert in_float64(model, x, lambda m, i: m(i)) is None
    result = trace_groups(model, x, forward_fn=lambda m, i: m(i))
    verified = verify_groups(model, result, x, lambda m, i: m(i))
    assert [g.id for g in verified.prunable] == [g.id
                                                 for g in result.prunable]
