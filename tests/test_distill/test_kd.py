import numpy as np
import pytest
import torch

from mmcpd.distill import KDLoss
from mmcpd.registry import DISTILL_LOSSES


def _softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def _reference(s, t, tau):
    """KL(p_t || p_s) * tau^2 per sample, averaged, with plain loops."""
    total = 0.0
    for s_row, t_row in zip(s, t):
        p_s, p_t = _softmax(s_row / tau), _softmax(t_row / tau)
        total += sum(pt * np.log(pt / ps) for pt, ps in zip(p_t, p_s))
    return total / len(s) * tau**2


@pytest.mark.parametrize('tau', [1.0, 4.0])
def test_kd_matches_direct_computation(tau):
    torch.manual_seed(0)
    s, t = torch.randn(
        5, 7, dtype=torch.float64), torch.randn(
            5, 7, dtype=torch.float64)
    loss = KDLoss(tau=tau, loss_weight=0.5)(s, t)
    expected = 0.5 * _reference(s.numpy(), t.numpy(), tau)
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_kd_dense_logits_average_over_pixels():
    torch.manual_seed(0)
    s, t = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    flat_s = s.permute(0, 2, 3, 1).reshape(-1, 3).double().numpy()
    flat_t = t.permute(0, 2, 3, 1).reshape(-1, 3).double().numpy()
    loss = KDLoss(tau=2.0)(s, t)
    assert loss.item() == pytest.approx(
        _reference(flat_s, flat_t, 2.0), rel=1e-5)


def test_kd_is_zero_for_equal_logits_and_positive_otherwise():
    s = torch.randn(4, 10)
    assert KDLoss(tau=3.0)(s, s.clone()).item() == 0.0
    assert KDLoss(tau=3.0)(s, torch.randn(4, 10)).item() > 0


def test_kd_gradient_reaches_only_the_student():
    s = torch.randn(4, 10, requires_grad=True)
    t = torch.randn(4, 10, requires_grad=True)
    KDLoss()(s, t).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_kd_built_from_registry():
    loss = DISTILL_LOSSES.build(dict(type='KDLoss', tau=2.0))
    assert isinstance(loss, KDLoss) and loss.tau == 2.0


@pytest.mark.parametrize('kwargs, message', [
    (dict(tau=0), '`tau` should be positive, but got 0'),
    (dict(tau=-1.5), '`tau` should be positive, but got -1.5'),
    (dict(loss_weight=-1), '`loss_weight` should be >= 0, but got -1'),
])
def test_kd_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        KDLoss(**kwargs)


def test_kd_rejects_mismatched_classes():
    with pytest.raises(
            ValueError, match=r'student \(4, 10\).*teacher \(4, '
            r'12\)'):
        KDLoss()(torch.randn(4, 10), torch.randn(4, 12))
