"""Export a model to ONNX and check the file against torch.

Exporter: torch 2.14 has two. ``'legacy'`` (TorchScript tracing,
``torch.onnx.export(..., dynamo=False)``, opsets 7 to 20) is the default
here: it exports MMPretrain classifiers and MMSeg segmentors in tensor mode
as they are, and needs nothing beyond torch and onnx. ``'dynamo'``
(``torch.export`` based, torch's own default since 2.9, opsets 18 and up)
needs the ``onnxscript`` package and traces through mmengine's Python-side
checks less forgivingly; choose it with ``exporter='dynamo'``. Either way
the file records which exporter and opset made it (``metadata_props``).

MMDetection detectors export their heads' raw outputs (tensor mode, see
:class:`TensorModeAdapter`, or a ``forward`` override). Two things of
mmdet 3.3 and mmcv 2.1 break the legacy exporter, and are mended for the
time of the export only (:func:`exportable`): box decoders import the
removed ``mmdet.core.export`` (:mod:`mmcpd.deploy.mmdet_clip`), and mmcv's
``RoIAlign`` writes an invalid ``Squeeze`` at opset 13 and up
(:mod:`mmcpd.deploy.roi_align`). mmcv's deformable convolutions export as
custom ``mmcv::`` ops unless replaced by plain ones
(:mod:`mmcpd.deploy.deform_conv`).

Every export runs ``onnx.checker.check_model``; :func:`verify_onnx` then runs
the file in onnxruntime on the same input and raises
:class:`ONNXMismatchError`, with the largest absolute and relative
differences, when it does not reproduce torch's outputs.

Examples:
    >>> x = torch.rand(1, 3, 224, 224)
    >>> export_onnx(model, x, 'model.onnx', opset=17, exporter='legacy')
    >>> verify_onnx('model.onnx', model, x, rtol=1e-3, atol=1e-4)
"""
import contextlib
import os
import os.path as osp
import warnings
from typing import (Callable, Dict, Iterator, List, Optional, Sequence,
                    Tuple)

import numpy as np
import torch
from torch import nn

from mmcpd.deploy.adapter import TensorModeAdapter
from mmcpd.comb.cuda_only_ops import cuda_only_ops
from mmcpd.deploy.corner_pool import mmcv_corner_pool_exportable
from mmcpd.deploy.deform_conv import mmcv_deform_conv_exportable
from mmcpd.deploy.mmdet_clip import mmdet_core_export
from mmcpd.deploy.providers import provider_options
from mmcpd.deploy.roi_align import mmcv_roi_align_exportable
from mmcpd.deploy.static_sizes import static_sizes
from mmcpd.deploy.traced_copy import traceable_deepcopy
from mmcpd.utils.module import Forward

__all__ = [
    'export_onnx', 'verify_onnx', 'ONNXMismatchError', 'EXPORTERS',
    'INPUT_NAME', 'exportable'
]

INPUT_NAME = 'input'
#: Opsets each exporter writes.
_OPSETS = {'legacy': (7, 20), 'dynamo': (18, 23)}


class ONNXMismatchError(RuntimeError):
    """The ONNX file does not reproduce the torch model's outputs."""


def _output_names(num: int) -> List[str]:
    return ['output'] if num == 1 else [f'output{i}' for i in range(num)]


def _export_legacy(module: nn.Module, inputs: torch.Tensor, path: str,
                   opset: int, dynamic_batch: bool,
                   output_names: List[str]) -> None:
    dynamic_axes = None
    if dynamic_batch:
        dynamic_axes = {
            name: {
                0: 'batch'
            }
            for name in [INPUT_NAME] + output_names
        }
    with warnings.catch_warnings():
        # The exporter is named on purpose; its deprecation is not news.
        warnings.filterwarnings('ignore', category=DeprecationWarning)
        warnings.filterwarnings('ignore', message='.*legacy TorchScript.*')
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        torch.onnx.export(
            module, (inputs, ),
            path,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            do_constant_folding=True)


def _export_dynamo(module: nn.Module, inputs: torch.Tensor, path: str,
                   opset: int, dynamic_batch: bool,
                   output_names: List[str]) -> None:
    try:
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ImportError('exporter=\'dynamo\' needs the onnxscript package '
                          '(pip install onnxscript); exporter=\'legacy\' '
                          'does not') from err
    dynamic_shapes = None
    if dynamic_batch:
        dynamic_shapes = ({0: torch.export.Dim('batch')}, )
    torch.onnx.export(
        module, (inputs, ),
        path,
        dynamo=True,
        opset_version=opset,
        input_names=[INPUT_NAME],
        output_names=output_names,
        dynamic_shapes=dynamic_shapes,
        external_data=False,
        optimize=True)


#: Exporter name -> function(module, inputs, path, opset, dynamic_batch,
#: output_names).
EXPORTERS: Dict[str, Callable] = {
    'legacy': _export_legacy,
    'dynamo': _export_dynamo,
}


def _as_adapter(model: nn.Module, resize_to_input: bool,
                forward: Forward = None) -> TensorModeAdapter:
    if isinstance(model, TensorModeAdapter):
        if forward is not None:
            raise ValueError('`forward` should be None for a model that is '
                             'a TensorModeAdapter already (it has its own), '
                             f'but got {forward!r}')
        return model
    return TensorModeAdapter(
        model, resize_to_input=resize_to_input, forward=forward)


@contextlib.contextmanager
def exportable(opset: int) -> Iterator[None]:
    """Within the block, OpenMMLab code that torch's legacy exporter cannot
    trace as it is installed exports: mmdet 3.3's box decoders find
    ``mmdet.core.export`` (:func:`~mmcpd.deploy.mmdet_clip.
    mmdet_core_export`), mmcv's ``RoIAlign`` writes a valid ``RoiAlign``
    (:func:`~mmcpd.deploy.roi_align.mmcv_roi_align_exportable`), mmcv's
    ``CornerPool`` pools without ``cummax``
    (:func:`~mmcpd.deploy.corner_pool.mmcv_corner_pool_exportable`),
    mmcv's deformable convolutions (DCN, DCNv2) are plain PyTorch ops
    (:func:`~mmcpd.deploy.deform_conv.mmcv_deform_conv_exportable`),
    sizes that pooling, ``interpolate`` and ``pad`` read from tensor shapes
    are constants of the traced graph (the file takes one input shape; see
    :func:`~mmcpd.deploy.static_sizes.static_sizes`), and a tensor
    deep-copied in the forward is traced as a ``clone``
    (:func:`~mmcpd.deploy.traced_copy.traceable_deepcopy`). Nothing is
    changed outside the block, nor in any installed file.

    Args:
        opset (int): The opset being exported.
    """
    with mmdet_core_export(), mmcv_roi_align_exportable(opset), \
            static_sizes(), traceable_deepcopy():
        with mmcv_corner_pool_exportable(), \
                mmcv_deform_conv_exportable(opset), cuda_only_ops():
            yield


def _check_args(inputs: torch.Tensor, opset: int, exporter: str) -> None:
    if not isinstance(inputs, torch.Tensor):
        raise TypeError('`inputs` should be a torch.Tensor, but got '
                        f'{type(inputs).__name__}')
    if exporter not in EXPORTERS:
        raise ValueError(f'`exporter` should be one of {tuple(EXPORTERS)}, '
                         f'but got {exporter!r}')
    low, high = _OPSETS[exporter]
    if not isinstance(opset, int) or not low <= opset <= high:
        raise ValueError(f'`opset` should be in [{low}, {high}] for the '
                         f'{exporter} exporter, but got {opset!r}')


def export_onnx(model: nn.Module,
                inputs: torch.Tensor,
                path: str,
                opset: int = 17,
                dynamic_batch: bool = False,
                exporter: str = 'legacy',
                resize_to_input: bool = False,
                forward: Forward = None) -> str:
    """Export ``model`` in tensor mode to an ONNX file and check it.

    Args:
        model (nn.Module): An MMPretrain classifier, MMSeg segmentor,
            MMDetection detector, DistillWrapper or plain module; wrapped in
            :class:`TensorModeAdapter`.
        inputs (torch.Tensor): An example input, e.g. ``(1, 3, 224, 224)``,
            already normalised (the data preprocessor is not exported).
        path (str): Where to write the ``.onnx`` file.
        opset (int): ONNX opset. Defaults to 17.
        dynamic_batch (bool): Make the batch axis of the input and outputs
            dynamic. Defaults to False.
        exporter (str): ``'legacy'`` (TorchScript) or ``'dynamo'``
            (``torch.export``). Defaults to ``'legacy'``.
        resize_to_input (bool): Resize segmentation logits to the input size
            inside the graph. Defaults to False.
        forward (str | callable, optional): ``forward(model, inputs)``
            returning the tensors to export, or its import path; as
            CPDHook's ``forward``. Defaults to None: tensor mode.

    Returns:
        str: ``path``.

    Raises:
        ValueError: Unknown exporter or an opset it cannot write, or an
            op that cannot be exported at it (mmcv's RoIAlign below opset
            16 or in max mode).
        onnx.checker.ValidationError: The written file is not valid ONNX.
    """
    import onnx

    _check_args(inputs, opset, exporter)
    module = _as_adapter(model, resize_to_input, forward)
    with torch.no_grad(), cuda_only_ops():  # mmcv ops without CPU kernels
        num_outputs = len(module(inputs))
    names = _output_names(num_outputs)
    path = str(path)
    if osp.dirname(path):
        os.makedirs(osp.dirname(path), exist_ok=True)
    with torch.no_grad(), exportable(opset):
        EXPORTERS[exporter](module, inputs, path, opset, dynamic_batch, names)
    proto = onnx.load(path)
    _set_metadata(
        proto,
        exporter=exporter,
        opset=str(opset),
        torch_version=torch.__version__,
        input_shape=str(list(inputs.shape)),
        dynamic_batch=str(dynamic_batch))
    onnx.save(proto, path)
    onnx.checker.check_model(path, full_check=True)
    return path


def _set_metadata(proto, **props: str) -> None:
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = f'mmcpd_{key}', value


def make_session(path: str,
                 providers: Optional[Sequence[str]] = None,
                 threads: Optional[int] = None,
                 profile_prefix: Optional[str] = None,
                 spin: Optional[bool] = None):
    """An onnxruntime session with all graph optimisations on.

    Args:
        path (str): The ``.onnx`` file.
        providers (Sequence[str], optional): Execution providers. Defaults to
            ``['CPUExecutionProvider']``.
        threads (int, optional): Intra-op threads; None lets onnxruntime
            choose. Defaults to None.
        profile_prefix (str, optional): Turn onnxruntime's profiler on,
            writing ``<prefix>_<date>.json`` at ``end_profiling()``.
            Defaults to None.
        spin (bool, optional): Whether idle intra-op threads busy-wait for
            the next op. False frees the cores between runs: needed when
            several sessions take turns (their spinning threads would take
            the cores from each other). None keeps onnxruntime's default
            (spinning). Defaults to None.

    TensorRT gets an engine cache
    (:func:`~mmcpd.deploy.providers.provider_options`).

    Raises:
        RuntimeError: The session does not run on the first provider asked
            for. onnxruntime-gpu lists the CUDA and TensorRT providers
            whether or not their libraries (CUDA, cuDNN, TensorRT) load,
            and a session whose provider fails to load falls back to the
            next one, silently: CPU timings would pass for GPU ones.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if spin is not None:
        flag = '1' if spin else '0'
        options.add_session_config_entry('session.intra_op.allow_spinning',
                                         flag)
        options.add_session_config_entry('session.inter_op.allow_spinning',
                                         flag)
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    names = list(providers or ['CPUExecutionProvider'])
    asked = []
    for name in names:
        extra = provider_options(name)
        asked.append((name, extra) if extra else name)
    session = ort.InferenceSession(
        str(path), sess_options=options, providers=asked)
    got = session.get_providers()
    if not got or got[0] != names[0]:
        available = ort.get_available_providers()
        why = (f'this onnxruntime lists {names[0]} but could not set it up, '
               'e.g. its libraries (CUDA, cuDNN, TensorRT) did not load; '
               "see onnxruntime's errors above"
               if names[0] in available else
               f'this onnxruntime does not have it (it has {available})')
        raise RuntimeError(
            f'onnxruntime {ort.__version__} was asked to run {path} on '
            f'{names[0]}, but the session runs on '
            f'{got[0] if got else None} (asked {names}, got {got}): {why}')
    return session


def _compare(name: str, got: np.ndarray, want: np.ndarray, rtol: float,
             atol: float) -> Tuple[float, float]:
    if got.shape != want.shape:
        raise ONNXMismatchError(
            f'ONNX output `{name}` has shape {list(got.shape)} but torch '
            f'gives {list(want.shape)}')
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    rel = diff / np.maximum(np.abs(want.astype(np.float64)), 1e-12)
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = float(rel.max()) if rel.size else 0.0
    bad = diff > atol + rtol * np.abs(want)
    if not np.isfinite(got).all() or bad.any():
        where = np.unravel_index(int(np.argmax(diff)), diff.shape)
        raise ONNXMismatchError(
            f'ONNX output `{name}` differs from torch beyond rtol={rtol}, '
            f'atol={atol}: max abs diff {max_abs:.3g} at index '
            f'{tuple(int(i) for i in where)}, max rel diff {max_rel:.3g}, '
            f'{int(bad.sum())} of {bad.size} elements out of tolerance')
    return max_abs, max_rel


def _check_input_shape(path: str, expected: Sequence,
                       shape: Sequence[int]) -> None:
    fits = len(expected) == len(shape) and all(
        not isinstance(e, int) or e == s for e, s in zip(expected, shape))
    if not fits:
        raise ValueError(
            f'`inputs` has input shape {list(shape)} but `{path}` takes '
            f'{list(expected)}; export with dynamic_batch=True to vary the '
            'batch size')


def verify_onnx(path: str,
                model: nn.Module,
                inputs: torch.Tensor,
                rtol: float = 1e-3,
                atol: float = 1e-4,
                providers: Optional[Sequence[str]] = None,
                resize_to_input: bool = False,
                forward: Forward = None) -> Dict[str, Dict[str, float]]:
    """Check that onnxruntime reproduces the torch model on ``inputs``.

    An element passes when ``|onnx - torch| <= atol + rtol * |torch|``
    (``numpy.allclose``'s rule).

    Args:
        path (str): The ``.onnx`` file.
        model (nn.Module): The torch model it was exported from.
        inputs (torch.Tensor): The input to run both on; its batch size may
            differ from the export's if the batch axis is dynamic.
        rtol (float): Relative tolerance. Defaults to 1e-3.
        atol (float): Absolute tolerance. Defaults to 1e-4.
        providers (Sequence[str], optional): onnxruntime execution providers.
            Defaults to the CPU provider.
        resize_to_input (bool): As given to :func:`export_onnx`. Defaults to
            False.
        forward (str | callable, optional): As given to
            :func:`export_onnx`. Defaults to None.

    Returns:
        dict: ``{output name: {'max_abs': float, 'max_rel': float,
        'scale': float}}``, ``scale`` being the torch output's largest
        magnitude.

    Raises:
        ONNXMismatchError: The number or shape of the outputs differ, or an
            output differs beyond the tolerance; the message gives the max
            absolute and max relative difference.
        ValueError: A negative tolerance, or ``inputs`` of a shape that the
            file does not take.
    """
    for name, value in (('rtol', rtol), ('atol', atol)):
        if not value >= 0:
            raise ValueError(f'`{name}` should be >= 0, but got {value}')
    module = _as_adapter(model, resize_to_input, forward)
    with torch.no_grad(), cuda_only_ops():
        want = [t.detach().cpu().numpy() for t in module(inputs)]
    session = make_session(path, providers)
    input_name = session.get_inputs()[0].name
    _check_input_shape(path, session.get_inputs()[0].shape, inputs.shape)
    got = session.run(None, {input_name: inputs.detach().cpu().numpy()})
    names = [o.name for o in session.get_outputs()]
    if len(got) != len(want):
        raise ONNXMismatchError(f'ONNX file `{path}` has {len(got)} outputs '
                                f'but the torch model gives {len(want)}')
    report = {}
    for name, g, w in zip(names, got, want):
        max_abs, max_rel = _compare(name, g, w, rtol, atol)
        report[name] = dict(max_abs=max_abs, max_rel=max_rel,
                            scale=float(np.abs(w).max()) if w.size else 0.0)
    return report
