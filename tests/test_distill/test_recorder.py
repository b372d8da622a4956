import pytest
import torch
from torch import nn

from mmcpd.distill import record_outputs


def _model():
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(),
        nn.Sequential(nn.Conv2d(4, 8, 1), nn.ReLU()))


def test_records_named_outputs_and_removes_hooks():
    model = _model()
    x = torch.randn(1, 3, 6, 6)
    with record_outputs(model, ['0', '2.0']) as out:
        y = model(x)
    assert torch.equal(out['0'], model[0](x))
    assert out['2.0'].shape == (1, 8, 4, 4)
    assert not model[0]._forward_hooks and not model[2][0]._forward_hooks
    # gradients flow through recorded outputs
    out['2.0'].sum().backward()
    assert model[2][0].weight.grad is not None
    assert y.shape == (1, 8, 4, 4)


def test_unknown_module_is_named():
    with pytest.raises(ValueError, match='has no submodule `2.5`'):
        with record_outputs(_model(), ['2.5']):
            pass


def test_module_that_did_not_run_is_named():
    model = _model()
    with pytest.raises(RuntimeError, match=r"\['2.0'\] .* did not run"):
        with record_outputs(model, ['0', '2.0']):
            model[0](torch.randn(1, 3, 6, 6))
    assert not model[0]._forward_hooks


def test_hooks_removed_when_forward_raises():
    model = _model()
    with pytest.raises(RuntimeError):
        with record_outputs(model, ['0']):
            model(torch.randn(1, 5, 6, 6))
    assert not model[0]._forward_hooks
