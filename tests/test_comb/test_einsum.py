"""``torch.einsum`` as K-Net writes it, and an attention to bases like
EMANet's: each index carries or ties its operands' channels. masked ==
pruned == rebuilt == ONNX, and the comb's FLOPs equal mmengine's counter
before and after pruning."""
import pytest
import torch
from torch import nn

from mmcpd.comb.handlers.einsum import parse_einsum

from .equivalence import assert_flops_match
from .test_structures import _check, _prunable


class KernelUpdate(nn.Module):
    """K-Net's mask-pooled features, then EMANet's attention to bases."""

    def __init__(self, c=12, n=6, k=5):
        super().__init__()
        self.feat = nn.Conv2d(3, c, 3, padding=1)
        self.masks = nn.Conv2d(3, n, 1)
        self.bases = nn.Conv2d(3, k, 1)
        self.proj = nn.Linear(c, 8)
        self.reduce_n = nn.Linear(n, 1)
        self.reduce_k = nn.Linear(k, 1)
        self.proj2 = nn.Linear(c, 8)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        feat = self.feat(x)
        masks = self.masks(x).sigmoid()
        pooled = torch.einsum('bnhw,bchw->bnc', masks, feat)  # K-Net
        y = self.reduce_n(self.proj(pooled).transpose(1, 2)).squeeze(-1)
        bases = self.bases(x).flatten(2)  # b, k, hw
        attn = torch.einsum('bcn,bkn->bck', feat.flatten(2), bases)  # EMA
        z = self.proj2(self.reduce_k(attn).squeeze(-1))
        return self.head(y + z)


def test_einsum_indices_carry_and_tie_channels(tmp_path):
    model = KernelUpdate()
    x = torch.randn(1, 3, 8, 8)
    result, pruned, _ = _check(model, x, tmp_path, ratio=0.4)
    # the summed `c` ties the features to the projection's columns; `n`
    # (mask channels) and `k` (bases) are carried to the output and pruned
    feat, = _prunable(result, 'feat.weight')
    assert {'proj.weight', 'proj2.weight'} <= {m.name for m in feat.members}
    _prunable(result, 'masks.weight', 'bases.weight')
    assert pruned.feat.out_channels < 12 and pruned.masks.out_channels < 6
    assert_flops_match(model, result, x, seeds=3)


@pytest.mark.parametrize('equation,ndims,ok', [
    ('bnhw,bchw->bnc', [4, 4], True),
    ('bqc, bqhw->bchw', [3, 4], True),  # spaces, as MaskFormer writes it
    ('...c,c->...', [3, 1], False),     # ellipsis
    ('ii->i', [2], False),              # diagonal
    ('ij,jk', [2, 2], False),           # implicit output
    ('ij,jk->ik', [2, 3], False),       # a term that does not fit
])
def test_equations_the_handler_takes(equation, ndims, ok):
    assert (parse_einsum(equation, ndims) is not None) == ok
