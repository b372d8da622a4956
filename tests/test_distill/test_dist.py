import numpy as np
import pytest
import torch

from mmcpd.distill import DISTLoss


def _softmax_rows(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _reference(s, t, beta, gamma, tau):
    """Pearson correlations from numpy's corrcoef, row by row."""
    y_s, y_t = _softmax_rows(s / tau), _softmax_rows(t / tau)
    inter = np.mean(
        [1 - np.corrcoef(y_s[i], y_t[i])[0, 1] for i in range(len(y_s))])
    intra = np.mean([
        1 - np.corrcoef(y_s[:, j], y_t[:, j])[0, 1]
        for j in range(y_s.shape[1])
    ])
    return tau**2 * (beta * inter + gamma * intra)


@pytest.mark.parametrize('beta, gamma, tau', [(1.0, 1.0, 1.0),
                                              (2.0, 0.5, 4.0)])
def test_dist_matches_direct_computation(beta, gamma, tau):
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    loss = DISTLoss(
        beta=beta, gamma=gamma, tau=tau, loss_weight=2.0,
        eps=1e-12)(torch.from_numpy(s), torch.from_numpy(t))
    expected = 2.0 * _reference(s, t, beta, gamma, tau)
    assert loss.item() == pytest.approx(expected, rel=1e-8)


def test_dist_dense_treats_pixels_as_samples():
    rng = np.random.default_rng(1)
    s, t = rng.normal(size=(2, 4, 3, 3)), rng.normal(size=(2, 4, 3, 3))
    loss = DISTLoss(eps=1e-12)(torch.from_numpy(s), torch.from_numpy(t))
    flat = [x.transpose(0, 2, 3, 1).reshape(-1, 4) for x in (s, t)]
    assert loss.item() == pytest.approx(
        _reference(*flat, 1.0, 1.0, 1.0), rel=1e-8)


def test_dist_is_near_zero_for_equal_logits():
    s = torch.randn(8, 10, dtype=torch.float64)
    assert DISTLoss()(s, s.clone()).item() < 1e-6
    assert DISTLoss()(s, torch.randn(8, 10, dtype=torch.float64)).item() > 0.1


def test_dist_gradient_reaches_only_the_student():
    s = torch.randn(8, 10, requires_grad=True)
    t = torch.randn(8, 10, requires_grad=True)
    DISTLoss()(s, t).backward()
    assert s.grad.abs().sum() > 0
    assert t.grad is None


def test_dist_rejects_bad_arguments():
    with pytest.raises(ValueError, match='`beta` should be >= 0, but got -1'):
        DISTLoss(beta=-1)
    with pytest.raises(
            TypeError, match='`gamma` should be a number, but '
            'got str'):
        DISTLoss(gamma='1')
