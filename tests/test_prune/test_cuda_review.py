"""Surgery on GPUs: random draws and mask mode off the CPU.

The CPU tests emulate what a GPU does differently: a device the CPU
generator is not on (a tensor subclass that says it is on ``meta`` and
follows CUDA's rules for meeting CPU tensors), the float32 norms of CUDA
autocast (``layer_norm`` / ``group_norm`` that return float32 on half
inputs), a machine with several CUDA generators. The ``cuda`` tests check
the same on a real GPU.
"""
import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import handle_torch_function, has_torch_function_variadic
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

from mmcpd.comb import NormSite
from mmcpd.prune.surgery import verify
from mmcpd.prune.surgery.mask import exact_norms
from mmcpd.prune.surgery.verify import randomize_model, same_random

aten = torch.ops.aten
ELSEWHERE = torch.device('meta')


class Elsewhere(torch.Tensor):
    """A tensor on another device than the CPU generator's: it says it is
    on ``meta`` and keeps its values in ``elem`` (a CPU tensor). Its ops run
    under :class:`OtherDevice` only."""

    @staticmethod
    def __new__(cls, elem):
        t = torch.Tensor._make_wrapper_subclass(
            cls, elem.shape, dtype=elem.dtype, device=ELSEWHERE,
            strides=elem.stride(), storage_offset=elem.storage_offset())
        t.elem = elem
        return t

    __torch_function__ = torch._C._disabled_torch_function_impl

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        raise AssertionError(f'{func} on an Elsewhere tensor outside '
                             'OtherDevice')


def _unwrap(x):
    return x.elem if isinstance(x, Elsewhere) else x


def _wrap(x):
    return Elsewhere(x) if isinstance(x, torch.Tensor) else x


class OtherDevice(TorchDispatchMode):
    """CUDA's rules for :class:`Elsewhere` tensors: they meet CPU tensors
    in an op only as 0-dim scalars, or in copies (``copy_``, ``.to``)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flat, _ = tree_flatten((args, kwargs))
        there = any(isinstance(a, Elsewhere) for a in flat)
        if func is aten._to_copy.default:
            kw = dict(kwargs)
            device = kw.pop('device', None)
            out = func(_unwrap(args[0]), **kw)
            moved = device is not None and device.type == ELSEWHERE.type
            stays = device is None and isinstance(args[0], Elsewhere)
            return Elsewhere(out) if moved or stays else out
        if func is aten.copy_.default:
            _unwrap(args[0]).copy_(_unwrap(args[1]))
            return args[0]
        here = [
            a for a in flat if isinstance(a, torch.Tensor)
            and not isinstance(a, Elsewhere) and a.dim() > 0
        ]
        if there and here:
            raise RuntimeError(
                f'Expected all tensors to be on the same device, but found '
                f'at least two devices, {ELSEWHERE} and cpu! ({func})')
        out = func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs))
        return tree_map(_wrap, out) if there else out


class Net(nn.Module):

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)
        self.register_buffer('zeros', torch.zeros(8))


def _move_elsewhere(model: nn.Module) -> nn.Module:
    for module in model.modules():
        for table in (module._parameters, module._buffers):
            for name, t in table.items():
                if t is not None:
                    table[name] = Elsewhere(t.detach().clone())
    return model


def test_the_emulated_device_refuses_cpu_tensors_like_cuda():
    """The emulation is not vacuous: mixing a drawn CPU tensor into an
    Elsewhere tensor fails, as on a GPU; moving it first does not."""
    t = Elsewhere(torch.ones(3))
    noise = torch.rand(3)
    with OtherDevice():
        with pytest.raises(RuntimeError, match='same device'):
            t.mean() + t.std() * noise
        moved = t.mean() + t.std() * noise.to(t.device)
        assert isinstance(moved, Elsewhere)
        t.copy_(noise)  # copies cross devices, as on a GPU
    assert torch.equal(t.elem, noise)


def test_randomize_model_draws_on_the_cpu_for_any_device():
    """randomize_model on a model whose tensors are not on the CPU
    generator's device (a CUDA model): no device error, the tensors stay
    where they were, with the values a CPU copy gets from the same seed."""
    torch.manual_seed(0)
    cpu = Net()
    there = _move_elsewhere(copy.deepcopy(cpu))
    randomize_model(cpu, seed=5)
    with OtherDevice():
        randomize_model(there, seed=5)
    want = dict(list(cpu.named_parameters()) + list(cpu.named_buffers()))
    got = dict(list(there.named_parameters()) + list(there.named_buffers()))
    assert want.keys() == got.keys()
    for name, t in got.items():
        assert isinstance(t, Elsewhere) and t.device == ELSEWHERE, name
        torch.testing.assert_close(t.elem, want[name], msg=name)
    # the draws changed the trivial tensors (so every branch ran)
    assert not torch.equal(want['bn.weight'], torch.ones(8))
    assert not torch.equal(want['zeros'], torch.zeros(8))


def _fp32_norm(real, name):
    """``real`` (``F.layer_norm`` / ``F.group_norm``) as CUDA autocast runs
    it: in float32 whatever the input's dtype, float32 out."""

    def norm(input, arg, weight=None, bias=None, eps=1e-5):
        if has_torch_function_variadic(input, weight, bias):
            return handle_torch_function(
                norm, (input, weight, bias), input, arg, weight=weight,
                bias=bias, eps=eps)

        def up(t):
            return None if t is None else t.float()

        return real(up(input), arg, up(weight), up(bias), eps)

    norm.__name__ = name
    return norm


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('kind', ['layer_norm', 'group_norm'])
def test_exact_norms_take_the_norms_dtype(monkeypatch, kind, dtype):
    """Mask mode under CUDA fp16 autocast: the norm over the kept channels
    is float32 while its input is half; the masked output is that float32
    norm on the kept channels and zeros elsewhere."""
    real = getattr(F, kind)
    monkeypatch.setattr(F, kind, _fp32_norm(real, kind))
    keep = [0, 2, 3, 4, 6, 7]  # units 1 and 5 removed
    if kind == 'layer_norm':
        module, dim = nn.LayerNorm(8), -1
        x = torch.randn(2, 5, 8)
    else:
        module, dim = nn.GroupNorm(2, 8), 1
        x = torch.randn(2, 8, 3, 3)
    with torch.no_grad():
        module.weight.uniform_(0.5, 1.5)
        module.bias.uniform_(-0.5, 0.5)
    site = NormSite(module='', kind=kind,
                    channels=tuple((0, u) for u in range(8)))
    result = SimpleNamespace(norms=[site])
    x = x.to(dtype)
    with torch.no_grad(), exact_norms(module, result, {0: [1, 5]}):
        got = module(x)
    index = torch.tensor(keep)
    xk = x.index_select(dim, index).float()
    w, b = module.weight[index], module.bias[index]
    if kind == 'layer_norm':
        yk = real(xk, (6, ), w, b, module.eps)
    else:  # both groups keep channels
        yk = real(xk, 2, w, b, module.eps)
    assert got.dtype == torch.float32  # what the unmasked norm gives
    assert torch.equal(got.index_select(dim, index), yk.detach())
    removed = torch.tensor([1, 5])
    assert not got.index_select(dim, removed).any()


def test_exact_norms_make_each_index_once(monkeypatch):
    """Kept indices become a tensor once per context and device, not at
    every forward (a host-to-device copy each time on a GPU)."""
    site = NormSite(module='', kind='layer_norm',
                    channels=tuple((0, u) for u in range(8)))
    mix = NormSite(module='', kind='softmax', dim=-1, index=0,
                   keeps_dim=True,
                   channels=tuple((0, u) for u in range(8)))
    result = SimpleNamespace(norms=[site, mix])
    keep = [0, 1, 3, 4, 5, 6, 7]

    class Block(nn.Module):

        def forward(self, x):
            return torch.softmax(F.layer_norm(x, (8, )), -1)

    made = []
    real = torch.tensor

    def counting(data, *args, **kwargs):
        if isinstance(data, list) and data == keep:
            made.append(data)
        return real(data, *args, **kwargs)

    block = Block()
    x = torch.randn(2, 8)
    with torch.no_grad(), exact_norms(block, result, {0: [2]}):
        first = block(x)
        monkeypatch.setattr(torch, 'tensor', counting)
        for _ in range(3):
            again = block(x)
        monkeypatch.undo()
    assert made == [], 'the forwards after the first made index tensors'
    assert torch.equal(first, again)
    assert not first[:, 2].any()
    torch.testing.assert_close(first[:, keep].sum(-1), torch.ones(2))


def test_same_random_forks_every_cuda_generator(monkeypatch):
    """``torch.manual_seed`` reseeds every GPU: same_random forks the
    generators of all CUDA devices, not the CPU's alone."""
    forked = []
    real = torch.random.fork_rng

    def recording(devices=None, enabled=True, _caller='fork_rng',
                  _devices_kw='devices', device_type=None):
        forked.append((None if devices is None else list(devices),
                       device_type))
        return real(devices=[], enabled=enabled)  # no GPU here

    monkeypatch.setattr(torch.random, 'fork_rng', recording)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    torch.manual_seed(123)
    torch.rand(5)
    before = torch.get_rng_state()
    with same_random(7):
        inside = torch.rand(4)
    assert forked == [([0, 1], 'cuda')]
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(inside, torch.rand(4, generator=torch.Generator()
                                          .manual_seed(7)))


def test_same_random_without_cuda_forks_the_cpu_only(monkeypatch):
    forked = []
    real = torch.random.fork_rng

    def recording(devices=None, **kwargs):
        forked.append(list(devices))
        return real(devices=[])

    monkeypatch.setattr(torch.random, 'fork_rng', recording)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with same_random():
        pass
    assert forked == [[]]


# ---------------------------------------------------------------- on a GPU


@pytest.mark.cuda
def test_randomize_model_on_cuda_matches_the_cpu():
    torch.manual_seed(0)
    cpu = Net()
    gpu = copy.deepcopy(cpu).cuda()
    randomize_model(cpu, seed=5)
    randomize_model(gpu, seed=5)
    for (name, a), (_, b) in zip(cpu.state_dict().items(),
                                 gpu.state_dict().items()):
        assert b.is_cuda, name
        torch.testing.assert_close(b.cpu(), a, rtol=1e-5, atol=1e-5,
                                   msg=name)


@pytest.mark.cuda
@pytest.mark.parametrize('kind', ['layer_norm', 'group_norm'])
def test_exact_norms_under_cuda_autocast(kind):
    if kind == 'layer_norm':
        module, dim, shape = nn.LayerNorm(8), -1, (2, 5, 8)
    else:
        module, dim, shape = nn.GroupNorm(2, 8), 1, (2, 8, 3, 3)
    module = module.cuda()
    site = NormSite(module='', kind=kind,
                    channels=tuple((0, u) for u in range(8)))
    result = SimpleNamespace(norms=[site])
    x = torch.randn(*shape, device='cuda', dtype=torch.float16)
    with torch.no_grad(), torch.autocast('cuda', dtype=torch.float16):
        plain = module(x)
        with exact_norms(module, result, {0: [1, 5]}):
            got = module(x)
    # what the unmasked norm gives (float32: autocast's norms)
    assert got.dtype == plain.dtype
    keep = torch.tensor([0, 2, 3, 4, 6, 7], device='cuda')
    xk = x.index_select(dim, keep).float()
    w, b = module.weight[keep], module.bias[keep]
    with torch.no_grad():
        want = F.layer_norm(xk, (6, ), w, b) if kind == 'layer_norm' \
            else F.group_norm(xk, 2, w, b)
    torch.testing.assert_close(got.index_select(dim, keep).float(), want,
                               rtol=1e-3, atol=1e-3)
    assert not got.index_select(dim, torch.tensor([1, 5],
                                                  device='cuda')).any()


@pytest.mark.cuda
def test_same_random_keeps_the_cuda_generators():
    torch.cuda.manual_seed_all(123)
    torch.rand(5, device='cuda')
    before = [torch.cuda.get_rng_state(d)
              for d in range(torch.cuda.device_count())]
    with verify.same_random(0):
        torch.rand(5, device='cuda')
    after = [torch.cuda.get_rng_state(d)
             for d in range(torch.cuda.device_count())]
    assert all(torch.equal(a, b) for a, b in zip(before, after))
