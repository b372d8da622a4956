"""mmcv ops with device kernels only (issue 25): CARAFE (CARAFE FPN) and
the masked convolution (Guided Anchoring's RetinaNet head). Their PyTorch
versions compute what mmcv's kernels compute (a loop written from the CUDA
kernels), run inside :func:`cuda_only_ops` where no kernel exists (the
CPU) and whenever a tracer watches, and let the comb prune through them:
masked == pruned == rebuilt == ONNX."""
import importlib
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmcv.ops import CARAFEPack, MaskedConv2d
from torch import nn

from mmcpd.comb import cuda_only_ops as ops
from mmcpd.comb import trace_groups
from mmcpd.comb.cuda_only_ops import carafe, cuda_only_ops, masked_conv2d

from .equivalence import assert_masked_equals_pruned, randomise

# the modules (``mmcv.ops.carafe`` is the function, by ``mmcv.ops``' name)
mmcv_carafe = importlib.import_module('mmcv.ops.carafe')
mmcv_masked = importlib.import_module('mmcv.ops.masked_conv')


def carafe_loop(x, masks, k, groups, s):
    """``carafe_naive_forward_cuda_kernel``, one output element at a time."""
    n, c, h, w = x.shape
    out = torch.zeros(n, c, h * s, w * s, dtype=x.dtype)
    r = (k - 1) // 2
    for b in range(n):
        for ch in range(c):
            group = ch // (c // groups)
            for ph in range(h * s):
                for pw in range(w * s):
                    dh, dw = ph // s, pw // s
                    for iy in range(dh - r, dh + r + 1):
                        for ix in range(dw - r, dw + r + 1):
                            if not (0 <= iy < h and 0 <= ix < w):
                                continue
                            m = (group * k + iy - dh + r) * k + ix - dw + r
                            out[b, ch, ph, pw] += \
                                x[b, ch, iy, ix] * masks[b, m, ph, pw]
    return out


@pytest.mark.parametrize('k,groups,s', [(3, 1, 2), (5, 2, 2), (3, 2, 3),
                                        (1, 1, 1)])
def test_carafe_is_mmcvs_kernel(k, groups, s):
    gen = torch.Generator().manual_seed(k * 10 + groups)
    x = torch.randn(2, 4, 3, 4, generator=gen, dtype=torch.float64)
    masks = torch.randn(2, groups * k * k, 3 * s, 4 * s, generator=gen,
                        dtype=torch.float64)
    assert torch.allclose(carafe(x, masks, k, groups, s),
                          carafe_loop(x, masks, k, groups, s), atol=1e-12)
    with pytest.raises(ValueError, match='masks of shape'):
        carafe(x, masks[:, 1:], k, groups, s)


def masked_conv_loop(x, mask, weight, bias, padding):
    """mmcv's ``masked_im2col`` + ``addmm`` + ``masked_col2im``: at each
    position with ``mask > 0``, bias + the weights times the window."""
    _, _, h, w = x.shape
    kh, kw = weight.shape[2:]
    xp = F.pad(x, (padding, padding, padding, padding))
    out = torch.zeros(1, weight.shape[0], h, w, dtype=x.dtype)
    for i in range(h):
        for j in range(w):
            if mask[0, i, j] > 0:
                window = xp[0, :, i:i + kh, j:j + kw]
                out[0, :, i, j] = bias + (weight * window).sum((1, 2, 3))
    return out


def test_masked_conv2d_is_mmcvs_kernel():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 5, 6, generator=gen, dtype=torch.float64)
    weight = torch.randn(4, 3, 3, 3, generator=gen, dtype=torch.float64)
    bias = torch.randn(4, generator=gen, dtype=torch.float64)
    mask = torch.randn(1, 5, 6, generator=gen)  # > 0 at about half
    got = masked_conv2d(x, mask, weight, bias, 1)
    assert torch.allclose(got, masked_conv_loop(x, mask, weight, bias, 1),
                          atol=1e-12)
    assert (got[0, :, mask[0] <= 0] == 0).all()  # no bias there
    with pytest.raises(ValueError, match='inconsistent'):
        masked_conv2d(x, mask, weight, bias, 0)
    with pytest.raises(ValueError, match='Stride'):
        masked_conv2d(x, mask, weight, bias, 1, 2)


class Net(nn.Module):
    """A CARAFE upsampler and a masked conv, as CARAFE FPN and GA-RetinaNet
    use them (the mask thresholded from a location branch)."""

    def __init__(self, groups=1):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.up = CARAFEPack(8, 2, up_kernel=3, up_group=groups,
                             compressed_channels=8)
        self.loc = nn.Conv2d(8, 1, 1)
        self.cls = MaskedConv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 3, 1)

    def forward(self, x):
        f = self.up(self.stem(x).relu())
        mask = self.loc(f).sigmoid()[0] >= 0.5
        return self.head(self.cls(f, mask).relu())


def test_outside_the_block_mmcvs_functions_stay():
    before = (mmcv_carafe.carafe, mmcv_masked.masked_conv2d)
    with cuda_only_ops(), cuda_only_ops():  # nested: no double swap
        assert mmcv_carafe.carafe.mmcpd_stand_in
        assert CARAFEPack.feature_reassemble.__globals__['carafe'] is \
            mmcv_carafe.carafe
        assert MaskedConv2d.forward.__globals__['masked_conv2d'] is \
            mmcv_masked.masked_conv2d
        assert mmcv_masked.MaskedConv2dFunction.apply.mmcpd_stand_in
        Net().eval()(torch.randn(1, 3, 4, 4))  # runs on the CPU
    assert (mmcv_carafe.carafe, mmcv_masked.masked_conv2d) == before
    assert 'apply' not in vars(mmcv_masked.MaskedConv2dFunction)


def test_mmcvs_kernel_where_it_exists_unless_traced(monkeypatch):
    """On a kernel's device mmcv's Function runs (here: it raises, as
    there is no CPU kernel), except under a tracer (the comb)."""
    monkeypatch.setattr(ops, 'KERNEL_DEVICES', ('cpu', ))
    model = Net().eval()
    x = torch.randn(1, 3, 4, 4)
    with cuda_only_ops():
        with pytest.raises(RuntimeError, match='not found'):
            model(x)
        trace_groups(model, x)


@pytest.mark.parametrize('groups', [1, 2])
def test_comb_prunes_through_them(groups, tmp_path):
    from mmcpd.deploy import export_onnx, verify_onnx
    model = randomise(Net(groups)).eval()
    x = torch.randn(1, 3, 4, 4)
    result = trace_groups(model, x)

    def group_of(name, role='out'):
        return next(g for g in result.groups if any(
            m.name == name and m.role == role for m in g.members))

    features = group_of('stem.weight')  # into CARAFE: its channels pass
    cls = group_of('cls.weight')  # masked conv: rows and columns
    assert cls.prunable and 'head.weight' in {m.name for m in cls.members}
    # the reassembly kernels are laid out by kernel size and group
    assert not group_of('up.content_encoder.weight').prunable
    if groups == 1:
        assert features.prunable
        assert {'up.channel_compressor.weight', 'loc.weight',
                'cls.weight'} <= {m.name for m in features.members}
    else:  # each group's channels read their group's kernels: kept
        assert not features.prunable
    removed = {g.id: list(range(0, g.num_units, 3)) for g in result.prunable}
    with cuda_only_ops():  # plain forwards on the CPU
        pruned, _ = assert_masked_equals_pruned(model, result, x, removed)
    assert pruned.cls.out_channels < 8
    # the export and its check enter the block themselves
    path = export_onnx(pruned, x, osp.join(str(tmp_path), 'pruned.onnx'))
    verify_onnx(path, pruned, x)  # plain ONNX ops, no mmcv:: ones
