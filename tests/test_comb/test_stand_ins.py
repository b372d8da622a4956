"""mmcv's multi-scale deformable attention, as one op (issue 25, item 3):
on the CPU its PyTorch version (whose shape reads tied all heads into one
unit), on CUDA its C++ op (opaque to the tracer; emulated here by a
function that runs with torch functions disabled, as compiled code does).
Either way a unit is a whole head, and masked == pruned."""
import pytest
import torch
from mmcv.ops import MultiScaleDeformableAttention
from mmcv.ops import multi_scale_deform_attn as msda
from torch import nn

from mmcpd.comb import trace_groups

from .equivalence import assert_masked_equals_pruned, randomise


class Deformable(nn.Module):
    """A query stream through mmcv's module; ``cuda_op`` calls the C++
    op's ``apply`` as mmcv does on CUDA."""

    def __init__(self, cuda_op=False):
        super().__init__()
        self.cuda_op = cuda_op
        self.inp = nn.Linear(8, 32)
        self.attn = MultiScaleDeformableAttention(
            embed_dims=32, num_heads=4, num_levels=2, num_points=2,
            batch_first=True)
        self.out = nn.Linear(32, 3)
        # attributes, as a model keeps them (no buffers: not randomised)
        self.shapes = torch.tensor([[4, 4], [2, 2]])
        self.starts = torch.tensor([0, 16])
        self.ref = torch.rand(1, 20, 2, 2,
                              generator=torch.Generator().manual_seed(0))

    def forward(self, x):
        v = self.inp(x)
        if not self.cuda_op:
            y = self.attn(v, value=v, reference_points=self.ref,
                          spatial_shapes=self.shapes,
                          level_start_index=self.starts)
            return self.out(y)
        a = self.attn
        value = a.value_proj(v).view(1, 20, a.num_heads, -1)
        offsets = a.sampling_offsets(v).view(1, 20, a.num_heads,
                                             a.num_levels, a.num_points, 2)
        weights = a.attention_weights(v).view(
            1, 20, a.num_heads, a.num_levels * a.num_points).softmax(-1)
        weights = weights.view(1, 20, a.num_heads, a.num_levels,
                               a.num_points)
        locations = self.ref[:, :, None, :, None, :] + offsets / 4
        y = msda.MultiScaleDeformableAttnFunction.apply(
            value, self.shapes, self.starts, locations, weights,
            a.im2col_step)
        return self.out(a.output_proj(y))


def _compiled(value, shapes, starts, locations, weights, step):
    """The C++ op's result, computed where the tracer cannot see it."""
    with torch._C.DisableTorchFunction():
        return msda.multi_scale_deformable_attn_pytorch(
            value, shapes, locations, weights)


@pytest.mark.parametrize('cuda_op', [False, True])
def test_deformable_attention_prunes_whole_heads(cuda_op, monkeypatch):
    if cuda_op:
        monkeypatch.setattr(msda.MultiScaleDeformableAttnFunction, 'apply',
                            _compiled)
    model = randomise(Deformable(cuda_op).eval())
    x = torch.randn(1, 20, 8)
    result = trace_groups(model, x)
    assert not [w for w in result.warnings if 'outside torch' in w]
    heads = next(g for g in result.groups if any(
        m.name == 'attn.value_proj.weight' and m.role == 'out'
        for m in g.members))
    assert heads.prunable and heads.num_units == 4
    names = {m.name for m in heads.members}
    assert {'attn.sampling_offsets.weight', 'attn.attention_weights.weight',
            'attn.output_proj.weight'} <= names
    pruned, _ = assert_masked_equals_pruned(model, result, x,
                                            {heads.id: [1, 3]})
    assert pruned.attn.num_heads == 2
    # the original functions are back after the trace
    assert msda.multi_scale_deformable_attn_pytorch.__name__ == \
        'multi_scale_deformable_attn_pytorch'
