"""Compare the latency of a baseline and a pruned model in onnxruntime.

Each model comes either as a config (+ checkpoint), which is built with
:func:`mmcpd.apis.init_model`, exported with :func:`export_onnx`, verified
against torch and measured with mmengine's FLOP counter, or as an ``.onnx``
file, measured from its graph. Both are then timed by
:func:`measure_latency` with the same settings, one after the other.

The result is a plain dict (what ``tools/benchmark_onnx.py`` writes as
JSON): the system (CPU, threads, onnxruntime version, provider), the
settings, per model its params, FLOPs and latency statistics, and the
speedups ``baseline / pruned`` of latency and FLOPs, with their ratio
(1.0 means latency fell as much as FLOPs did).

What is exported is the model's tensor mode (a detector's raw head outputs),
or a forward override: ``forward(model, inputs)`` or its import path, given
as :class:`ModelSource`'s ``forward`` or, failing that, the ``forward`` of
the config's CPDHook (:func:`config_forward`), so that a model is timed on what
it was combed and pruned on.
"""
import os
import os.path as osp
import platform
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import torch

from mmcpd.apis.experiment import find_cpd_hook
from mmcpd.deploy.complexity import model_complexity, onnx_complexity
from mmcpd.deploy.latency import LatencyResult, measure_latencies
from mmcpd.deploy.onnx_export import export_onnx, verify_onnx
from mmcpd.deploy.simplify import simplify_onnx
from mmcpd.models.loading import init_model
from mmcpd.utils.config import load_config
from mmcpd.utils.module import Forward, callable_name, import_callable

__all__ = [
    'ModelSource', 'prepare_onnx', 'benchmark_models', 'speedups',
    'config_forward'
]

#: A forward override: ``forward(model, inputs)`` or its import path.


def config_forward(cfg, forward: Forward = None) -> Optional[Callable]:
    """The forward to export a config's model with: ``forward`` if given,
    else its CPDHook's ``forward`` (``cfg.cpd`` or the CPDHook entry of
    ``cfg.custom_hooks``), else None (tensor mode).

    Args:
        cfg (str | Config): The config or its path (``pkg::path`` too).
        forward (str | callable, optional): An override of the override.
            Defaults to None.

    Returns:
        callable | None: Imported if it was given as an import path.

    Raises:
        ImportError: The import path does not import; the message names
            where it came from.
    """
    if forward is not None:
        return import_callable(forward, 'forward')
    hook = find_cpd_hook(load_config(cfg)) or {}
    return import_callable(hook.get('forward'), 'forward of the CPDHook')


@dataclass
class ModelSource:
    """Where a model comes from: a config (+ checkpoint) or an ONNX file.

    Args:
        name (str): Its name in the report, e.g. ``'baseline'``.
        config (str, optional): Config path. Defaults to None.
        checkpoint (str, optional): Checkpoint path; None keeps random
            weights (fine for latency). Defaults to None.
        onnx (str, optional): An ``.onnx`` file instead of a config.
            Defaults to None.
        forward (str | callable, optional): How a config's model is run
            for export, see :func:`config_forward`. Defaults to None: the
            CPDHook's of the config, else tensor mode.
    """
    name: str
    config: Optional[str] = None
    checkpoint: Optional[str] = None
    onnx: Optional[str] = None
    forward: Forward = None

    def __post_init__(self):
        if (self.config is None) == (self.onnx is None):
            raise ValueError(f'model `{self.name}` needs either a config or '
                             'an ONNX file, not both or neither')
        if self.onnx is not None and self.checkpoint is not None:
            raise ValueError(f'model `{self.name}` is an ONNX file: it takes '
                             f'no checkpoint, but got {self.checkpoint}')
        if self.onnx is not None and self.forward is not None:
            raise ValueError(f'model `{self.name}` is an ONNX file: it takes '
                             f'no forward, but got {self.forward!r}')

    @classmethod
    def from_args(cls,
                  name: str,
                  args: Sequence[str],
                  forward: Forward = None) -> 'ModelSource':
        """``[model.onnx]``, ``[config.py]`` or ``[config.py, ckpt.pth]``;
        ``forward`` is kept for configs only."""
        args = list(args)
        if len(args) == 1 and args[0].endswith('.onnx'):
            return cls(name, onnx=args[0])
        if len(args) in (1, 2) and not args[0].endswith('.onnx'):
            return cls(
                name,
                config=args[0],
                checkpoint=args[1] if len(args) == 2 else None,
                forward=forward)
        raise ValueError(f'`--{name}` should be an ONNX file, or a config '
                         f'and optionally a checkpoint, but got {args}')

    def describe(self) -> dict:
        if self.onnx is not None:
            return dict(onnx=self.onnx)
        return dict(
            config=self.config,
            checkpoint=self.checkpoint,
            forward=callable_name(self.forward))


def prepare_onnx(source: ModelSource,
                 shape: Sequence[int],
                 work_dir: str,
                 opset: int = 17,
                 exporter: str = 'legacy',
                 simplify: bool = False,
                 rtol: float = 1e-3,
                 atol: float = 1e-4) -> dict:
    """Export (or take) a model's ONNX file and count its params and FLOPs.

    Args:
        source (ModelSource): The model.
        shape (Sequence[int]): Input shape ``(N, C, H, W)``.
        work_dir (str): Where exported files go.
        opset (int): ONNX opset. Defaults to 17.
        exporter (str): ``'legacy'`` or ``'dynamo'``. Defaults to
            ``'legacy'``.
        simplify (bool): Also write an onnxslim-simplified file and return
            it as ``onnx``. Defaults to False.
        rtol (float): Relative tolerance of the ONNX check. Defaults to 1e-3.
        atol (float): Absolute tolerance of the ONNX check. Defaults to 1e-4.

    Returns:
        dict: ``onnx`` (path to time), ``exported`` (path before slimming),
        ``params``, ``flops``, ``flops_counter``, ``verify`` (max
        differences to torch; None for ONNX inputs) and, for configs,
        ``forward`` (the import path of the forward override exported,
        None for tensor mode).
    """
    os.makedirs(work_dir, exist_ok=True)
    if source.onnx is not None:
        if not osp.isfile(source.onnx):
            raise FileNotFoundError(
                f'ONNX file `{source.onnx}` does not exist')
        info = dict(onnx_complexity(source.onnx, shape))
        info.update(onnx=source.onnx, exported=source.onnx, verify=None)
        model = inputs = None
    else:
        cfg = load_config(source.config)
        forward = config_forward(cfg, source.forward)
        model = init_model(cfg, source.checkpoint, device='cpu')
        inputs = torch.randn(
            *shape, generator=torch.Generator().manual_seed(0))
        path = osp.join(work_dir, f'{source.name}.onnx')
        export_onnx(
            model,
            inputs,
            path,
            opset=opset,
            exporter=exporter,
            forward=forward)
        info = dict(model_complexity(model, inputs, forward=forward))
        info.update(
            onnx=path,
            exported=path,
            forward=callable_name(forward),
            verify=verify_onnx(
                path, model, inputs, rtol=rtol, atol=atol, forward=forward))
    if simplify:
        slim = simplify_onnx(info['exported'],
                             osp.join(work_dir, f'{source.name}.slim.onnx'))
        if model is not None:
            info['verify_slim'] = verify_onnx(
                slim, model, inputs, rtol=rtol, atol=atol, forward=forward)
        info['onnx'] = slim
    return info


def speedups(baseline: dict, pruned: dict) -> dict:
    """Baseline over pruned, for latency (mean and median) and FLOPs."""
    lat = baseline['latency']['mean_ms'] / pruned['latency']['mean_ms']
    med = baseline['latency']['median_ms'] / pruned['latency']['median_ms']
    flops = baseline['flops'] / pruned['flops'] if pruned['flops'] else None
    params = (baseline['params'] /
              pruned['params']) if pruned['params'] else None
    return dict(
        latency=lat,
        latency_median=med,
        flops=flops,
        params=params,
        latency_over_flops=lat / flops if flops else None)


def _system(result: LatencyResult) -> dict:
    import onnx
    import onnxruntime as ort

    return dict(
        cpu=result.cpu,
        threads=result.threads,
        provider=result.provider,
        providers_used=result.providers_used,
        onnxruntime_version=ort.__version__,
        onnx_version=onnx.__version__,
        torch_version=torch.__version__,
        python=platform.python_version(),
        platform=platform.platform())


def benchmark_models(sources: List[ModelSource],
                     shape: Sequence[int],
                     work_dir: str,
                     warmup: int = 50,
                     runs: int = 1000,
                     threads: Optional[int] = None,
                     provider: str = 'cpu',
                     opset: int = 17,
                     exporter: str = 'legacy',
                     simplify: bool = False,
                     compare_slim: bool = False,
                     rtol: float = 1e-3,
                     atol: float = 1e-4,
                     progress: bool = True,
                     interleave: bool = False,
                     spin: bool = False) -> Dict:
    """Export, check and time each model; compare the first two.

    Args:
        sources (list[ModelSource]): One or two models, baseline first.
        shape (Sequence[int]): Input shape ``(N, C, H, W)``.
        work_dir (str): Where the ONNX files go.
        warmup (int): Untimed runs per model. Defaults to 50.
        runs (int): Timed runs per model. Defaults to 1000.
        threads (int, optional): Intra-op threads. Defaults to all cores
            this process may use.
        provider (str): ``'cpu'``, ``'cuda'`` or ``'tensorrt'``. Defaults to
            ``'cpu'``.
        opset (int): ONNX opset. Defaults to 17.
        exporter (str): ``'legacy'`` or ``'dynamo'``. Defaults to
            ``'legacy'``.
        simplify (bool): Time onnxslim-simplified files. Defaults to False.
        compare_slim (bool): Time both the exported and the simplified file
            of each model and report the slimming's speedup. Defaults to
            False.
        rtol (float): Relative tolerance of the ONNX check. Defaults to 1e-3.
        atol (float): Absolute tolerance of the ONNX check. Defaults to 1e-4.
        progress (bool): Show progress bars. Defaults to True.
        interleave (bool): Alternate the models run by run, so that load
            from other processes hits them alike (for shared machines).
            Defaults to False.
        spin (bool): Let onnxruntime's idle threads busy-wait (its
            default; see :func:`~mmcpd.deploy.measure_latency`). Defaults
            to False.

    Returns:
        dict: ``system``, ``settings``, ``models`` (by name: source, the
        forward exported, params, FLOPs, latency stats, raw ``times_ms``)
        and, for two models, ``speedup`` (see :func:`speedups`).
    """
    if not 1 <= len(sources) <= 2:
        raise ValueError('`sources` should hold 1 or 2 models, but got '
                         f'{len(sources)}')
    shape = [int(s) for s in shape]
    if len(shape) != 4:
        raise ValueError(f'`shape` should be (N, C, H, W), but got {shape}')
    infos, paths = [], []
    for source in sources:
        info = prepare_onnx(source, shape, work_dir, opset, exporter, simplify
                            or compare_slim, rtol, atol)
        infos.append(info)
        paths.append(info['onnx'] if simplify else info['exported'])
        if compare_slim:  # the other one
            paths.append(info['exported'] if simplify else info['onnx'])
    timings = measure_latencies(
        paths,
        shape,
        warmup,
        runs,
        threads,
        provider,
        progress,
        interleave=interleave,
        spin=spin)
    per_model = len(timings) // len(sources)
    models = {}
    for k, (source, info) in enumerate(zip(sources, infos)):
        timed = timings[k * per_model]
        entry = dict(
            source=source.describe(),
            forward=info.get('forward'),
            onnx=timed.path,
            params=info['params'],
            flops=info['flops'],
            flops_counter=info['flops_counter'],
            verify=info.get('verify_slim' if simplify else 'verify'),
            latency=vars(timed.stats),
            times_ms=timed.times_ms)
        if compare_slim:
            other = timings[k * per_model + 1]
            raw, slim = (other, timed) if simplify else (timed, other)
            entry['onnxslim'] = dict(
                onnx=info['onnx'],
                latency=vars(slim.stats),
                unslimmed_latency=vars(raw.stats),
                speedup=raw.stats.mean_ms / slim.stats.mean_ms,
                speedup_median=raw.stats.median_ms / slim.stats.median_ms,
                verify=info.get('verify_slim'),
                other_times_ms=other.times_ms)
        models[source.name] = entry
    last = timings[-1]
    result = dict(
        system=_system(last),
        settings=dict(
            shape=shape,
            batch=shape[0],
            warmup=warmup,
            runs=runs,
            opset=opset,
            exporter=exporter,
            simplify=simplify,
            interleave=interleave,
            spin=spin,
            rtol=rtol,
            atol=atol),
        models=models)
    if len(sources) == 2:
        result['speedup'] = speedups(*[models[s.name] for s in sources])
    return result
