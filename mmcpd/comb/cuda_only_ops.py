"""mmcv ops that have device kernels only (CUDA, MLU), as PyTorch ops.

mmcv 2.1's CARAFE upsampler (``carafe``, ``carafe_naive``: CARAFE FPN) and
its masked convolution (``masked_conv2d``, the masked path of
``MaskedConv2d``: Guided Anchoring's RetinaNet head at test time) are
autograd Functions over C++ kernels registered for CUDA and MLU only:

* on the CPU they raise ``... implementation for device cpu not found``,
  so such a model cannot be built, checked or exported there;
* on any device the tracer cannot see into them (a C++ op), so a comb on
  the GPU would freeze everything they touch;
* they export as ``mmcv::`` custom ops, which plain onnxruntime cannot
  load.

Yet what they compute is simple, and :func:`carafe` and
:func:`masked_conv2d` compute exactly that with PyTorch ops:

``carafe(x, masks, k, G, s)`` (content-aware reassembly, following mmcv's
``carafe_naive_forward_cuda_kernel``): output ``(n, c, ph, pw)`` is
``sum_{i, j < k} masks[n, (g * k + i) * k + j, ph, pw] * x[n, c, ph // s
+ i - (k - 1) / 2, pw // s + j - (k - 1) / 2]`` with ``g = c // (C / G)``
the channel's group and taps outside the map left out (zero padding),
summed in the kernel's order. Computed tap by tap at the low resolution,
each tap broadcast over the ``s x s`` output pixels it feeds, so the
tracer sees a pad, slices, reshapes, products and sums: with ``G = 1``
(CARAFE FPN's) a feature channel passes through to the same output
channel; the masks are read per tap and group, so the channels of the conv
that predicts them stay, and with ``G > 1`` so do the features' (split
into ``(G, C / G)``, each group's channels are tied to that group's
kernels; pruning them would have to keep the groups balanced).
mmengine's FLOPs counter, which counts none of these ops (nor mmcv's
Function, a ``prim::PythonOp``), and the comb's agree: 0.

``masked_conv2d(x, mask, weight, bias, padding)`` (mmcv's
``masked_im2col`` + ``addmm`` + ``masked_col2im``, and its NPU path): the
convolution (stride 1, dilation 1, one group, bias included) where ``mask
> 0``, zero elsewhere. The tracer sees ``conv2d`` (the convolution rule)
and ``where`` (channels pass).

:func:`cuda_only_ops` puts dispatchers in place of mmcv's functions for the
time of a block: mmcv's kernel runs where it exists (a tensor on a device
of :data:`KERNEL_DEVICES`) and nothing traces the call; the PyTorch version
runs everywhere else, i.e. on the CPU, and while the comb
(a ``TorchFunctionMode``), ``torch.jit.trace`` (mmengine's FLOPs counter)
or the ONNX exporter traces the model, on any device. The block is entered
by the comb's tracer (:func:`~mmcpd.comb.stand_ins.stand_ins`), by the
ONNX export and its check (:func:`~mmcpd.deploy.export_onnx`,
:func:`~mmcpd.deploy.verify_onnx`), by CPDHook for the time of a run
(``before_run`` to ``after_run``: training on the CPU) and by the
coverage oracle (:func:`~mmcpd.testing.coverage.check_model`,
:func:`~mmcpd.testing.hook_check.check_hook_run`). Elsewhere (a plain
forward on the CPU, the masked == pruned check of a test) enter it
yourself. Nothing is patched at import time and no file of mmcv is
touched. Nothing here
imports mmcv, except for the oracle, which builds its models inside the
block (``import_mmcv=True``): elsewhere mmcv's modules are patched only
where a model imported them.
"""
import contextlib
import importlib
import importlib.util
import sys
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.utils import _pair

from mmcpd.comb.rebind import rebound

__all__ = ['carafe', 'masked_conv2d', 'cuda_only_ops', 'KERNEL_DEVICES']


def carafe(features: Tensor, masks: Tensor, kernel_size: int,
           group_size: int, scale_factor: int) -> Tensor:
    """mmcv's ``carafe`` / ``carafe_naive``, in PyTorch ops.

    Args:
        features (Tensor): ``(N, C, H, W)``.
        masks (Tensor): ``(N, G * k * k, H * s, W * s)``, the reassembly
            kernel of each output pixel and group (normalised by the
            caller, as ``CARAFEPack`` does).
        kernel_size (int): ``k``, odd.
        group_size (int): ``G``, dividing ``C``.
        scale_factor (int): ``s``.

    Returns:
        Tensor: ``(N, C, H * s, W * s)``.
    """
    n, c, h, w = features.shape
    k, g, s = int(kernel_size), int(group_size), int(scale_factor)
    # mmcv's checks (asserts in CARAFEFunction.forward), as errors
    if s < 1 or k < 1 or (k - 1) % 2 or c % g:
        raise ValueError(
            f'carafe: needs an odd kernel_size ({k}), scale_factor >= 1 '
            f'({s}) and group_size ({g}) dividing the channels ({c})')
    if tuple(masks.shape[1:]) != (g * k * k, h * s, w * s):
        raise ValueError(
            f'carafe: masks of shape {tuple(masks.shape)} do not fit '
            f'features {tuple(features.shape)} with kernel_size {k}, '
            f'group_size {g}, scale_factor {s}')
    r = (k - 1) // 2
    padded = F.pad(features, (r, r, r, r))
    # output pixel (h * s + a, w * s + b) reads low-resolution pixel (h, w)
    weights = masks.reshape(n, g, k * k, h, s, w, s)
    out = None
    for i in range(k):
        for j in range(k):
            tap = padded[:, :, i:i + h, j:j + w]
            tap = tap.reshape(n, g, c // g, h, 1, w, 1)
            term = tap * weights[:, :, None, i * k + j]
            out = term if out is None else out + term
    return out.reshape(n, c, h * s, w * s)


def masked_conv2d(features: Tensor,
                  mask: Tensor,
                  weight: Tensor,
                  bias: Optional[Tensor],
                  padding=0,
                  stride=1) -> Tensor:
    """mmcv's ``masked_conv2d``, in PyTorch ops: ``conv2d(features, weight,
    bias, padding=padding)`` where ``mask > 0``, zero elsewhere.

    As mmcv's kernels, it ignores the module's dilation and groups (its
    im2col reads a dense, undilated window) and takes stride 1 only.

    Args:
        features (Tensor): ``(1, C_in, H, W)``.
        mask (Tensor): ``(1, H, W)``; positions with ``mask > 0`` are
            computed.
        weight (Tensor): ``(C_out, C_in, kh, kw)``.
        bias (Tensor, optional): ``(C_out, )``.
        padding (int | tuple): Zero padding.
        stride (int | tuple): Must be 1.

    Returns:
        Tensor: ``(1, C_out, H', W')``, ``H' x W'`` the convolution's size,
        which must be the mask's.
    """
    if _pair(stride) != (1, 1):
        raise ValueError(
            'Stride could not only be 1 in masked_conv2d currently.')
    if mask.dim() != 3 or mask.shape[0] != 1 or features.dim() != 4 or \
            features.shape[0] != 1 or \
            tuple(features.shape[2:]) != tuple(mask.shape[1:]):
        raise ValueError(
            f'masked_conv2d: needs features (1, C, H, W) and a mask (1, H, '
            f'W), got {tuple(features.shape)} and {tuple(mask.shape)}')
    out = F.conv2d(features, weight, bias, padding=_pair(padding))
    if tuple(out.shape[2:]) != tuple(mask.shape[1:]):
        # mmcv's CUDA kernel would write outside its output; its NPU path
        # raises the same
        raise ValueError(
            'The mask is inconsistent with the shape of output_conv: '
            f'{tuple(mask.shape[1:])} vs {tuple(out.shape[2:])}')
    return torch.where(mask[:, None] > 0, out, torch.zeros_like(out))


#: The device types mmcv 2.1 has kernels of these ops for.
KERNEL_DEVICES = ('cuda', 'mlu')

#: mmcv module -> [(function name, its autograd Function's name, ours)].
_MMCV: Dict[str, List[Tuple[str, str, Callable]]] = {
    'mmcv.ops.carafe': [('carafe', 'CARAFEFunction', carafe),
                        ('carafe_naive', 'CARAFENaiveFunction', carafe)],
    'mmcv.ops.masked_conv':
    [('masked_conv2d', 'MaskedConv2dFunction', masked_conv2d)],
}


def _traced() -> bool:
    """Whether a tracer that cannot see a C++ op is watching: the comb's
    ``TorchFunctionMode``, ``torch.jit.trace`` or the ONNX exporter."""
    return bool(torch._C._is_torch_function_mode_enabled()
                or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export())


def _dispatcher(original: Callable, ours: Callable) -> Callable:
    """``original`` (mmcv's kernel) on a device of :data:`KERNEL_DEVICES`
    when nothing traces, else ``ours``."""

    def call(*args, **kwargs):
        device = args[0].device.type if args and isinstance(
            args[0], Tensor) else None
        if device in KERNEL_DEVICES and not _traced():
            return original(*args, **kwargs)
        return ours(*args, **kwargs)

    call.__name__ = getattr(original, '__name__', ours.__name__)
    call.__doc__ = ours.__doc__
    call.mmcpd_stand_in = True
    return call


@contextlib.contextmanager
def cuda_only_ops(import_mmcv: bool = False) -> Iterator[None]:
    """Inside, mmcv's ``carafe``, ``carafe_naive`` and ``masked_conv2d``
    (where imported) dispatch to :func:`carafe` / :func:`masked_conv2d`
    except on a device with mmcv's kernel outside any trace, wherever they
    are called from: in every imported module that holds them (by
    identity: mmcv's modules, ``mmcv.ops``, modules that imported them by
    name) and in their Functions' ``apply``. Restored on exit; nested
    blocks leave the outer one's dispatchers in place.

    Args:
        import_mmcv (bool): Import mmcv's modules of these ops first (if
            mmcv is installed), for a block that builds its models inside
            (the coverage oracle). Defaults to False: a model that uses
            them has imported them.
    """
    pairs = []  # (mmcv's function, the dispatcher)
    attributes = []  # (Function class, 'apply', the dispatcher)
    for module_name, entries in _MMCV.items():
        if import_mmcv and importlib.util.find_spec('mmcv') is not None:
            importlib.import_module(module_name)
        module = sys.modules.get(module_name)
        for name, function, ours in entries:
            original = getattr(module, name, None)
            if original is None or getattr(original, 'mmcpd_stand_in',
                                           False):
                continue
            pairs.append((original, _dispatcher(original, ours)))
            cls = getattr(module, function, None)
            if cls is not None and 'apply' not in vars(cls):
                # ``Function.apply(...)`` called directly; the class
                # attribute is inherited (``torch.autograd.Function``'s)
                attributes.append((cls, 'apply', _dispatcher(original,
                                                             ours)))
    with rebound(pairs, attributes):
        yield
