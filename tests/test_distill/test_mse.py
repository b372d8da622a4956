import numpy as np
import pytest
import torch

from mmcpd.distill import MSELoss


def test_mse_matches_direct_computation():
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(2, 3, 4, 4)), rng.normal(size=(2, 3, 4, 4))
    expected = 0.5 * sum((a - b)**2 for a, b in zip(s.ravel(), t.ravel()))
    expected /= s.size
    loss = MSELoss(loss_weight=0.5)(torch.from_numpy(s), torch.from_numpy(t))
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_mse_gradient_reaches_only_the_student():
    s = torch.randn(2, 5, 8, requires_grad=True)
    t = torch.randn(2, 5, 8, requires_grad=True)
    MSELoss()(s, t).backward()
    assert s.grad.abs().sum() > 0 and t.grad is None


def test_mse_rejects_different_widths_naming_shapes():
    with pytest.raises(
            ValueError, match=r'student \(2, 5, 8\) and teacher '
            r'\(2, 5, 16\)'):
        MSELoss()(torch.randn(2, 5, 8), torch.randn(2, 5, 16))
