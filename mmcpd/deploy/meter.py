"""Measured latency of a model over a reference, for the closed loop.

:class:`LatencyMeter` exports the reference (unpruned) model to ONNX once;
each call exports a candidate and times it interleaved with the reference
in onnxruntime (:func:`~mmcpd.deploy.latency.measure_latencies`: all graph
optimisations, fixed threads, no spinning, I/O binding) and returns the
median over run pairs of candidate / reference time. Interleaving makes
load from other processes hit both runs of a pair alike, so the pairs'
ratios are steadier than either time, and steadier than the ratio of the
medians (on 2 cores at a load of 7, 50 runs of MobileNetV2 gave ratios of
medians from 0.20 to 0.59 for models of about 0.5). This is what
:class:`~mmcpd.prune.closed_loop.LatencyLoop` is given as ``measure`` by
:func:`mmcpd.prune_model` and :class:`~mmcpd.engine.hooks.CPDHook`.

Examples:
    >>> meter = LatencyMeter(model, torch.randn(1, 3, 224, 224), threads=2)
    >>> meter(pruned_model)   # e.g. 0.52: 1.92x faster
"""
import os.path as osp
import shutil
import tempfile
import time
from typing import Optional

import numpy as np
import torch
from torch import nn

from mmcpd.utils.module import Forward, cpu_copy, import_callable

__all__ = ['LatencyMeter', 'check_onnxruntime', 'meter_for']


def check_onnxruntime(what: str) -> None:
    """An ImportError naming ``what`` when onnxruntime is missing."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as err:
        raise ImportError(
            f'{what} needs onnxruntime to measure latency, but it is not '
            'installed (pip install onnxruntime), or give '
            '`closed_loop=False` to stop at the predicted latency') from err


class LatencyMeter:
    """Latency of models relative to a reference, timed in onnxruntime.

    Args:
        reference (nn.Module): The unpruned model (copied to the CPU and
            exported once), or None with ``reference_onnx``.
        inputs (torch.Tensor): Example input, e.g. ``(1, 3, 224, 224)``.
        threads (int, optional): onnxruntime intra-op threads. Defaults to
            the cores this process may use.
        runs (int): Interleaved timed runs per call. Defaults to 50.
        warmup (int): Untimed runs per model per call. Defaults to 10.
        provider (str): ``'cpu'``, ``'cuda'`` or ``'tensorrt'``. Defaults
            to ``'cpu'``.
        reference_onnx (str, optional): The reference's ONNX file, to
            reuse (e.g. on resume); written there when ``reference`` is
            given. Defaults to None (a temporary file).
        forward (str | callable, optional): ``forward(model, inputs)`` or
            its import path: what is exported (as CPDHook's ``forward``).
            Defaults to None: tensor mode.

    Attributes:
        calls (int): Measurements made.
        seconds (float): Time spent in them (export and timing).
        last (dict): ``ms`` of the reference and candidate of the last
            call.
    """

    def __init__(self,
                 reference: Optional[nn.Module],
                 inputs: torch.Tensor,
                 threads: Optional[int] = None,
                 runs: int = 50,
                 warmup: int = 10,
                 provider: str = 'cpu',
                 reference_onnx: Optional[str] = None,
                 forward: Forward = None):
        from mmcpd.deploy.latency import _check_settings
        check_onnxruntime('the closed latency loop')
        self.provider, self.threads = _check_settings(
            warmup, runs, threads, provider)
        self.runs, self.warmup = runs, warmup
        self.inputs = inputs.detach().cpu()
        self.forward = import_callable(forward, 'forward')
        self.folder = tempfile.mkdtemp(prefix='mmcpd_meter_')
        self.calls, self.seconds, self.last = 0, 0.0, {}
        if reference is None:
            if not reference_onnx or not osp.exists(reference_onnx):
                raise ValueError(
                    '`reference_onnx` should be an existing ONNX file when '
                    f'`reference` is None, but got {reference_onnx!r}')
            self.reference = reference_onnx
        else:
            self.reference = self._export(
                reference, reference_onnx
                or osp.join(self.folder, 'reference.onnx'))

    def _export(self, model: nn.Module, path: str) -> str:
        from mmcpd.deploy.onnx_export import export_onnx
        model = cpu_copy(model).eval()
        return export_onnx(model, self.inputs, path, forward=self.forward)

    def __call__(self, model: nn.Module) -> float:
        """Latency of ``model`` over the reference's: the median of the
        ratios of interleaved run pairs."""
        from mmcpd.deploy.latency import measure_latencies

        start = time.perf_counter()
        path = self._export(model, osp.join(self.folder, 'candidate.onnx'))
        ref, got = measure_latencies(
            [self.reference, path], warmup=self.warmup, runs=self.runs,
            threads=self.threads, provider=self.provider, progress=False,
            interleave=True)
        ratio = float(np.median(np.asarray(got.times_ms) /
                                np.asarray(ref.times_ms)))
        self.last = dict(reference_ms=ref.stats.median_ms,
                         ms=got.stats.median_ms, ratio=ratio)
        self.calls += 1
        self.seconds += time.perf_counter() - start
        return ratio

    def close(self) -> None:
        """Remove the temporary folder."""
        folder = getattr(self, 'folder', None)
        if folder:
            shutil.rmtree(folder, ignore_errors=True)

    def __del__(self):
        self.close()


def meter_for(model: nn.Module,
              inputs: torch.Tensor,
              settings: dict,
              table: Optional[dict] = None,
              reference_onnx: Optional[str] = None,
              forward: Forward = None):
    """The ``measure`` of a closed loop: ``settings['measure']`` if given,
    else a :class:`LatencyMeter` of ``model`` with ``settings`` (threads
    and provider default to the latency table's, so that the loop measures
    what the table predicts) that exports through ``forward``."""
    if settings.get('measure') is not None:
        return settings['measure']
    kwargs = dict(settings)
    kwargs.pop('measure', None)
    machine = (table or {}).get('machine', {})
    kwargs.setdefault('threads', machine.get('threads'))
    kwargs.setdefault('provider', machine.get('provider', 'cpu'))
    return LatencyMeter(model, inputs, reference_onnx=reference_onnx,
                        forward=forward, **kwargs)
