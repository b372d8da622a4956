"""Data that flows around the tracer freezes both sides.

numpy round trips, ``.tolist()``/``.item()`` of channel tensors and ops the
tracer cannot see (C++ extension ops, emulated here by running torch with
torch functions disabled, as compiled code does) freeze the groups of the
tensors that go in and of the tensors that come out, with a warning naming
the op and the module; what stays prunable is still exact.
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmcpd.comb import trace_groups

from .equivalence import (assert_masked_equals_pruned, random_removal,
                          randomise)

IMAGE = (2, 3, 8, 8)


def _group(result, name):
    return next(g for g in result.groups
                if any(m.name == name and m.role == 'out'
                       for m in g.members))


class Base(nn.Module):
    """``a`` feeds the opaque step, ``b`` meets what comes back, ``c`` and
    ``d`` are a plain prunable pair after it."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(3, 8, 1)
        self.c = nn.Conv2d(8, 6, 1)
        self.d = nn.Conv2d(6, 4, 1)

    def tail(self, y):
        return self.d(F.relu(self.c(y)))


class NumpyTrip(Base):

    def forward(self, x):
        z = torch.from_numpy(self.a(x).detach().cpu().numpy())
        return self.tail(z + self.b(x))


class ToList(Base):

    def forward(self, x):
        vals = self.a(x).mean((2, 3)).tolist()
        gate = torch.tensor(vals).view(x.shape[0], -1, 1, 1)
        return self.tail(self.b(x) * gate)


class Item(Base):

    def forward(self, x):
        s = self.a(x)
        vals = [s[:, i].mean().item() for i in range(s.shape[1])]
        return self.tail(self.b(x) * torch.tensor(vals).view(1, -1, 1, 1))


class _HiddenWrite(torch.autograd.Function):
    """Like mmcv's ops: a buffer from ``new_zeros``, filled by compiled code
    that the tracer cannot see."""

    @staticmethod
    def forward(ctx, x, offset, weight):
        out = x.new_zeros(x.shape[0], weight.shape[0], *x.shape[2:])
        with torch._C.DisableTorchFunction():
            y = torch.einsum('bchw,oc->bohw', x, weight)
            out.copy_(y + offset.mean(1, keepdim=True))
        return out

    @staticmethod
    def backward(ctx, grad):
        return None, None, None


class _HiddenNew(torch.autograd.Function):
    """A compiled op that returns a new tensor."""

    @staticmethod
    def forward(ctx, x, weight):
        with torch._C.DisableTorchFunction():
            return torch.einsum('bchw,oc->bohw', x, weight).contiguous()

    @staticmethod
    def backward(ctx, grad):
        return None, None


class DeformLike(nn.Module):
    """A module with an offset conv whose output only the compiled op
    reads, as mmcv's deformable convolutions."""

    def __init__(self, new):
        super().__init__()
        self.new = new
        self.offset = nn.Conv2d(8, 6, 1)
        self.weight = nn.Parameter(torch.randn(8, 8))

    def forward(self, x):
        if self.new:
            return _HiddenNew.apply(x, self.weight)
        return _HiddenWrite.apply(x, self.offset(x), self.weight)


class Extension(Base):

    def __init__(self, new):
        super().__init__()
        self.ext = DeformLike(new)

    def forward(self, x):
        return self.tail(self.ext(self.a(x)) + self.b(x))


CASES = {
    'numpy': (NumpyTrip, '`numpy`', 'no traced op made'),
    'tolist': (ToList, '`tolist`', '`tensor` in `model` makes a tensor '
               'after `tolist`'),
    'item': (Item, 'fixed index', 'after `item` in `model`'),
    'extension_buffer': (lambda: Extension(False), 'written outside torch',
                         'written outside torch'),
    'extension_new_tensor': (lambda: Extension(True),
                             'module `ext` returns a tensor made outside',
                             'module `ext` returns a tensor made outside'),
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_opaque_step_freezes_producer_and_consumer(case):
    cls, producer, consumer = CASES[case]
    model = randomise(cls().eval())
    x = torch.randn(*IMAGE)
    with pytest.warns(UserWarning) as record:
        result = trace_groups(model, x)
    a, b = _group(result, 'a.weight'), _group(result, 'b.weight')
    assert not a.prunable and producer in a.frozen, a.frozen
    assert not b.prunable and consumer in b.frozen, b.frozen
    messages = ' '.join(str(w.message) for w in record)
    assert consumer in messages
    c = _group(result, 'c.weight')
    assert c.prunable
    if case == 'extension_buffer':  # read only by the compiled op
        offset = _group(result, 'ext.offset.weight')
        assert not offset.prunable and 'outside torch' in offset.frozen
    removed = random_removal(result, 0.5)
    assert c.id in removed
    assert_masked_equals_pruned(model, result, x, removed)


class Clean(Base):
    """Constants, buffers and in-place writes the tracer sees: nothing is
    opaque."""

    def __init__(self):
        super().__init__()
        self.scale = torch.full((1, 8, 1, 1), 2.0)  # a plain attribute

    def train(self, mode=True):
        # made when the tracer calls eval(), as LeViT caches its biases
        self.cached = torch.rand(1, 8, 1, 1)
        return super().train(mode)

    def forward(self, x):
        y = self.a(x)
        buf = y.new_zeros(y.shape)
        buf[:, :4] = y[:, :4]
        acc = torch.zeros_like(y)
        acc.add_(self.b(x) * self.scale * self.cached)
        n = int(x.shape[0])
        return self.tail(buf + acc + n)


def test_traced_buffers_and_attributes_are_not_opaque():
    result = trace_groups(Clean().eval(), torch.randn(*IMAGE))
    assert not [w for w in result.warnings if 'outside torch' in w
                or 'no traced op' in w or 'out of torch' in w]


class PSA(nn.Module):
    """mmcv's PSAMask (a C++ op, as in PSANet): 9 mask channels in, one
    channel per position (8 x 8) out."""

    def __init__(self):
        super().__init__()
        from mmcv.ops import PSAMask
        self.a = nn.Conv2d(3, 9, 1)
        self.b = nn.Conv2d(3, 64, 1)
        self.psamask = PSAMask('collect', (3, 3))
        self.c = nn.Conv2d(64, 6, 1)
        self.d = nn.Conv2d(6, 4, 1)

    def forward(self, x):
        y = self.psamask(self.a(x)) + self.b(x)
        return self.d(F.relu(self.c(y)))


def test_mmcv_extension_op_freezes_producer_and_consumer():
    model = randomise(PSA().eval())
    x = torch.randn(*IMAGE)
    with pytest.warns(UserWarning, match='module `psamask` returns a tensor '
                      'written outside torch'):
        result = trace_groups(model, x)
    for name in ('a.weight', 'b.weight'):
        group = _group(result, name)
        assert not group.prunable and '`psamask`' in group.frozen
    c = _group(result, 'c.weight')
    assert c.prunable
    assert_masked_equals_pruned(model, result, x, {c.id: [1, 4]})
