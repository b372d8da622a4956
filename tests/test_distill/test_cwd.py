import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmcpd.distill import CWDLoss


def _reference(s, t, tau):
    """Per (n, c): softmax over positions, KL(t || s); sum * tau^2 / NC."""
    n, c = s.shape[:2]
    total = 0.0
    for i in range(n):
        for j in range(c):
            a = np.exp(t[i, j].ravel() / tau)
            p_t = a / a.sum()
            b = np.exp(s[i, j].ravel() / tau)
            p_s = b / b.sum()
            total += np.sum(p_t * np.log(p_t / p_s))
    return total * tau**2 / (n * c)


@pytest.mark.parametrize('tau', [1.0, 4.0])
def test_cwd_matches_direct_computation(tau):
    torch.manual_seed(0)
    s = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    t = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    loss = CWDLoss(tau=tau, loss_weight=3.0)(s, t)
    expected = 3.0 * _reference(s.numpy(), t.numpy(), tau)
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_cwd_is_zero_for_equal_maps():
    m = torch.randn(2, 5, 6, 6)
    assert CWDLoss(tau=2.0)(m, m.clone()).item() == 0.0
    assert CWDLoss(tau=2.0)(m, torch.randn(2, 5, 6, 6)).item() > 0


def test_cwd_resizes_student_to_teacher_size():
    torch.manual_seed(0)
    s = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    t = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    up = F.interpolate(s, size=(8, 8), mode='bilinear', align_corners=False)
    loss = CWDLoss()(s, t)
    assert loss.item() == pytest.approx(
        _reference(up.numpy(), t.numpy(), 1.0), rel=1e-10)


def test_cwd_gradient_reaches_only_the_student():
    s = torch.randn(2, 3, 4, 4, requires_grad=True)
    t = torch.randn(2, 3, 4, 4, requires_grad=True)
    CWDLoss()(s, t).backward()
    assert s.grad.abs().sum() > 0
    assert t.grad is None


def test_cwd_rejects_wrong_inputs():
    with pytest.raises(
            ValueError,
            match='should have 4 to 4 dimensions, '
            r'but got shape \(2, 3\)'):
        CWDLoss()(torch.randn(2, 3), torch.randn(2, 3))
    with pytest.raises(
            ValueError,
            match=r'student \(2, 3, 4, 4\) and '
            r'teacher \(2, 5, 4, 4\)'):
        CWDLoss()(torch.randn(2, 3, 4, 4), torch.randn(2, 5, 4, 4))
    with pytest.raises(ValueError, match='`tau` should be positive'):
        CWDLoss(tau=0.0)
