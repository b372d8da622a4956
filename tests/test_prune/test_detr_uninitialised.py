"""Deformable DETR's ONNX NaN (issue 25): its ``level_embed`` is
``torch.Tensor(levels, dims)``, uninitialised memory until
``init_weights``; the oracle's randomiser kept its NaN and redrew its
1e38s at their own scale, so whether the outputs were NaN (in torch and in
onnxruntime) depended on what the process had freed before. Now such a
parameter is drawn from N(0, 1), and a NaN output never matches."""
import torch
from torch import nn

from mmcpd.prune.surgery.verify import (outputs_match, randomize_model,
                                        try_removal)
from mmcpd.prune.verified_comb import comb_model


class LevelEmbed(nn.Module):
    """A linear stream plus a per-level embedding made as mmdet makes
    Deformable DETR's (``nn.Parameter(torch.Tensor(...))``)."""

    def __init__(self, fill):
        super().__init__()
        self.proj = nn.Linear(3, 4)
        self.level_embed = nn.Parameter(torch.Tensor(2, 4))
        self.head = nn.Linear(4, 2)
        with torch.no_grad():
            self.level_embed.copy_(fill)

    def forward(self, x):
        return self.head(self.proj(x) + self.level_embed[1])


def _garbage(values):
    return torch.tensor(values, dtype=torch.float32).repeat(2, 2)


def test_uninitialised_parameters_are_drawn_whatever_they_held():
    torch.manual_seed(0)
    a = LevelEmbed(_garbage([float('nan'), 1.9e38]))
    torch.manual_seed(0)
    b = LevelEmbed(_garbage([3e20, -7e9]))
    randomize_model(a, seed=2)
    randomize_model(b, seed=2)
    assert torch.isfinite(a.level_embed).all()
    assert torch.equal(a.level_embed, b.level_embed)
    assert a.level_embed.abs().max() < 6  # N(0, 1)
    torch.testing.assert_close(a(torch.ones(1, 3)), b(torch.ones(1, 3)))


def test_initialised_parameters_keep_their_own_scale():
    torch.manual_seed(0)
    model = LevelEmbed(_garbage([0.02, -0.03]))
    randomize_model(model, seed=2)
    assert model.level_embed.abs().max() < 0.2
    assert not torch.equal(model.level_embed, _garbage([0.02, -0.03]))


def test_a_nan_output_never_matches():
    nan = torch.tensor([1.0, float('nan')])
    assert outputs_match(nan, nan.clone()) == (False, float('inf'))
    inf = torch.tensor([1.0, float('-inf')])
    assert outputs_match(inf, inf.clone()) == (True, 0.0)
    assert not outputs_match(inf, -inf)[0]


def test_verification_names_a_nan_output():
    model = randomize_model(LevelEmbed(_garbage([0.1, -0.2])), seed=0)
    x = torch.randn(2, 3)
    result = comb_model(model, x)
    stream = next(g for g in result.groups if g.root == 'proj.weight')
    with torch.no_grad():
        model.head.bias[0] = float('nan')
    ok, why = try_removal(model, result, {stream.id: [0]}, x,
                          lambda m, i: m(i))
    assert not ok and 'masked model outputs NaN' in why
