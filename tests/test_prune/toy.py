"""A tiny conv net with hand-built coupled groups, for unit tests."""
import torch
from torch import nn

from mmcpd.comb.group import CoupledGroup, Member


class ToyNet(nn.Module):
    """conv1-bn1-relu-conv2-bn2-relu-pool-fc with ``c1`` and ``c2`` channels.
    """

    def __init__(self, c1: int = 6, c2: int = 8, classes: int = 3,
                 act: str = 'relu'):
        super().__init__()
        self.act = getattr(torch, act, None) or getattr(nn.functional, act)
        self.conv1 = nn.Conv2d(3, c1, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c2)
        self.fc = nn.Linear(c2, classes)

    def forward(self, x):
        x = self.act(self.bn1(self.conv1(x)))
        x = self.act(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


def _members(prefix_out, bn, prefix_in, channels):
    index, counts = tuple(range(channels)), (1, ) * channels
    members = [Member(f'{prefix_out}.weight', 0, 'out', index, counts)]
    for name in ('weight', 'bias', 'running_mean', 'running_var'):
        members.append(Member(f'{bn}.{name}', 0, 'param', index, counts))
    members.append(Member(f'{prefix_in}.weight', 1, 'in', index, counts))
    return tuple(members)


def toy_groups(model: ToyNet):
    """The two coupled groups of :class:`ToyNet` (one unit per channel)."""
    c1, c2 = model.conv1.out_channels, model.conv2.out_channels
    return (CoupledGroup(0, _members('conv1', 'bn1', 'conv2', c1), c1,
                         ('conv@conv1', )),
            CoupledGroup(1, _members('conv2', 'bn2', 'fc', c2), c2,
                         ('conv@conv2', )))


def zero_unit(model: nn.Module, group: CoupledGroup, unit: int) -> None:
    """Remove ``unit`` of ``group`` by zeroing its entries (reference)."""
    tensors = dict(model.named_parameters())
    tensors.update(model.named_buffers())
    with torch.no_grad():
        for m in group.members:
            idx = torch.tensor(m.units[unit])
            tensors[m.name].index_fill_(m.dim, idx, 0)


def linear_table(model: nn.Module, inputs: torch.Tensor,
                 points: int = 5) -> dict:
    """A hand-made latency table of ``model`` (nothing timed): each
    layer's ms grows with in x out, plus a rest of a fifth of the layers,
    as isolated timings would give without overhead."""
    from mmcpd.deploy.latency_table import collect_layers, width_grid

    layers = collect_layers(model, inputs)
    for layer in layers:
        layer['grid_out'] = width_grid(layer['out'], points)
        layer['grid_in'] = width_grid(layer['in'], points)
        layer['ms'] = [[1e-3 * i * o for o in layer['grid_out']]
                       for i in layer['grid_in']]
    full = sum(layer['ms'][-1][-1] for layer in layers)
    return dict(model_ms=1.2 * full, rest_ms=0.2 * full, layers=layers,
                machine=dict(threads=1, provider='cpu'))
