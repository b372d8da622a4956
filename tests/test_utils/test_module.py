import pytest
import torch
from torch import nn

from mmcpd.utils.module import cpu_copy


def test_cpu_copy_copies_tensor_by_tensor(monkeypatch):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4),
                          nn.Linear(6, 2))
    model[1].running_mean.normal_()
    model[2].weight.requires_grad_(False)

    def refuse(*args, **kwargs):  # a whole-module copy on the device
        raise AssertionError('a parameter was deep-copied where it lives')

    monkeypatch.setattr(nn.Parameter, '__deepcopy__', refuse)
    copy = cpu_copy(model)
    ours, theirs = dict(model.named_parameters()), dict(
        copy.named_parameters())
    assert ours.keys() == theirs.keys()
    for name, param in theirs.items():
        assert isinstance(param, nn.Parameter) and param.device.type == 'cpu'
        assert param is not ours[name]
        assert param.requires_grad == ours[name].requires_grad
    for (name, a), b in zip(model.state_dict().items(),
                            copy.state_dict().values()):
        assert torch.equal(a, b), name
    with torch.no_grad():
        copy[0].weight.add_(1)  # independent of the original
    assert not torch.equal(copy[0].weight, model[0].weight)
    # the module structure is copied too
    assert copy[1] is not model[1]
    with pytest.raises(AssertionError):
        import copy as copy_module
        copy_module.deepcopy(model)
