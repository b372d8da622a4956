"""mmengine's counter and the comb count attention under a mask alike."""
import torch
from torch import nn

from mmcpd.deploy import model_complexity


class Attention(nn.Module):
    """Self-attention with a query unlike its key (no fused fast path), as
    in a DETR decoder; ``masked`` gives it a boolean ``attn_mask``, which
    makes torch compute ``QK^T`` by ``baddbmm`` instead of ``bmm``."""

    def __init__(self, masked):
        super().__init__()
        self.masked = masked
        self.attn = nn.MultiheadAttention(16, 2)

    def forward(self, x):
        mask = None
        if self.masked:
            mask = torch.zeros(x.shape[0], x.shape[0], dtype=torch.bool)
        return self.attn(x + 1, x, x, attn_mask=mask)[0]


def test_masked_attention_counts_its_scores():
    from mmcpd.apis.pruning import comb_model
    from mmcpd.prune.cost import model_cost
    torch.manual_seed(0)
    x = torch.randn(10, 1, 16)
    plain, masked = Attention(False).eval(), Attention(True).eval()
    masked.load_state_dict(plain.state_dict())
    want = model_complexity(plain, x)['flops']
    # QK^T (10 x 10 x 16) and attention x V, and 4 projections
    assert want == 2 * 10 * 10 * 16 + 4 * 10 * 16 * 16
    assert model_complexity(masked, x)['flops'] == want
    result = comb_model(masked, x)
    # per item of the first axis, as the coverage check scales it
    cost = model_cost(masked, result, 'flops').total() * x.shape[0]
    assert cost == want
