"""Time an ONNX file in onnxruntime.

How the numbers are taken, and why:

* all graph optimisations on (``ORT_ENABLE_ALL``), as a deployment has them;
* intra-op threads fixed (and reported), inter-op threads 1, sequential
  execution: the thread count changes latency more than most pruning does;
* the input is made once and bound with I/O binding (on the device for the
  CUDA and TensorRT providers), so no host-to-device copy is timed;
* ``warmup`` untimed runs (>= 50 by default: the first runs allocate memory
  and, on GPUs, tune kernels), then ``runs`` timed ones (1000, as in the
  paper), each timed on its own with ``time.perf_counter_ns`` and the
  garbage collector off;
* statistics: mean, median, p90, p99, std, min, max (ms) and throughput
  (images per second = batch * 1000 / mean).

The paper's reference tool warmed up once and timed
the host-device copies with the model; this module does neither.

Examples:
    >>> result = measure_latency('model.onnx', threads=2, runs=1000)
    >>> print(f'{result.stats.mean_ms:.2f} ms')
"""
import gc
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from mmcpd.deploy.providers import cache_root, gpu_model, provider_options

__all__ = [
    'LatencyStats', 'LatencyResult', 'measure_latency', 'measure_latencies',
    'latency_stats', 'PROVIDERS', 'cpu_model', 'default_threads', 'gpu_model',
    'cache_root', 'provider_options'
]

#: Short provider names -> onnxruntime execution providers (in order of
#: preference; CPU is the fallback for ops the others lack).
PROVIDERS: Dict[str, List[str]] = {
    'cpu': ['CPUExecutionProvider'],
    'cuda': ['CUDAExecutionProvider', 'CPUExecutionProvider'],
    'tensorrt': [
        'TensorrtExecutionProvider', 'CUDAExecutionProvider',
        'CPUExecutionProvider'
    ],
}
#: Where each provider wants its inputs and outputs bound.
_DEVICES = {'cpu': 'cpu', 'cuda': 'cuda', 'tensorrt': 'cuda'}
#: ONNX element types -> numpy dtypes, for making inputs.
_NUMPY_TYPES = {
    'tensor(float)': np.float32,
    'tensor(float16)': np.float16,
    'tensor(double)': np.float64,
}


@dataclass
class LatencyStats:
    """Latency statistics of one model, in milliseconds per batch."""
    mean_ms: float
    median_ms: float
    p90_ms: float
    p99_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    throughput: float
    batch: int
    runs: int


@dataclass
class LatencyResult:
    """Statistics, the raw times and how they were measured."""
    path: str
    stats: LatencyStats
    times_ms: List[float] = field(repr=False)
    input_shape: List[int]
    provider: str
    providers_used: List[str]
    threads: int
    warmup: int
    onnxruntime_version: str
    cpu: str
    spinning: bool = False

    def to_dict(self, with_times: bool = False) -> dict:
        data = asdict(self)
        if not with_times:
            data.pop('times_ms')
        return data


def latency_stats(times_ms: Sequence[float], batch: int) -> LatencyStats:
    """Summarise per-run times (ms) of batches of ``batch`` images."""
    times = np.asarray(times_ms, dtype=np.float64)
    if times.size == 0:
        raise ValueError('`times_ms` should not be empty')
    mean = float(times.mean())
    return LatencyStats(
        mean_ms=mean,
        median_ms=float(np.median(times)),
        p90_ms=float(np.percentile(times, 90)),
        p99_ms=float(np.percentile(times, 99)),
        std_ms=float(times.std(ddof=1)) if times.size > 1 else 0.0,
        min_ms=float(times.min()),
        max_ms=float(times.max()),
        throughput=batch * 1000.0 / mean,
        batch=batch,
        runs=int(times.size))


def cpu_model() -> str:
    """The CPU's model name, e.g. ``'AMD EPYC 7763 64-Core Processor'``."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def default_threads() -> int:
    """The number of CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _input_array(session, shape: Optional[Sequence[int]],
                 seed: int) -> np.ndarray:
    meta = session.get_inputs()[0]
    if shape is None:
        if not all(isinstance(d, int) for d in meta.shape):
            raise ValueError(
                f'input `{meta.name}` has dynamic axes {meta.shape}: give '
                '`shape`')
        shape = meta.shape
    shape = [int(s) for s in shape]
    dtype = _NUMPY_TYPES.get(meta.type)
    if dtype is None:
        raise TypeError(f'input `{meta.name}` is a {meta.type}; only float '
                        'inputs are supported')
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape).astype(dtype)


def _bind(session, array: np.ndarray, device: str):
    import onnxruntime as ort

    binding = session.io_binding()
    value = ort.OrtValue.ortvalue_from_numpy(array, device, 0)
    binding.bind_ortvalue_input(session.get_inputs()[0].name, value)
    for out in session.get_outputs():
        binding.bind_output(out.name, device)
    return binding, value


def _check_settings(warmup, runs, threads, provider: str):
    import onnxruntime as ort

    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f'`warmup` should be an int >= 0, but got {warmup}')
    if not isinstance(runs, int) or runs < 1:
        raise ValueError(f'`runs` should be an int >= 1, but got {runs}')
    key = provider.lower()
    if key not in PROVIDERS:
        raise ValueError(f'`provider` should be one of {tuple(PROVIDERS)}, '
                         f'but got {provider!r}')
    available = ort.get_available_providers()
    if PROVIDERS[key][0] not in available:
        raise RuntimeError(
            f'provider {provider!r} needs {PROVIDERS[key][0]}, which this '
            f'onnxruntime {ort.__version__} lacks; it has {available}')
    threads = default_threads() if threads is None else threads
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f'`threads` should be an int >= 1, but got '
                         f'{threads}')
    return key, threads


class _Timed:
    """One file's session, bound input and times."""

    def __init__(self, path, shape, key: str, threads: int, seed: int,
                 runs: int, spin: bool):
        from mmcpd.deploy.onnx_export import make_session

        self.path = str(path)
        self.spin = spin
        self.session = make_session(
            path, PROVIDERS[key], threads=threads, spin=spin)
        self.array = _input_array(self.session, shape, seed)
        self.binding, self._value = _bind(self.session, self.array,
                                          _DEVICES[key])
        self.times = np.empty(runs, dtype=np.float64)

    def run(self) -> None:
        self.session.run_with_iobinding(self.binding)
        self.binding.synchronize_outputs()

    def time(self, i: int) -> None:
        start = time.perf_counter_ns()
        self.session.run_with_iobinding(self.binding)
        self.binding.synchronize_outputs()
        self.times[i] = (time.perf_counter_ns() - start) / 1e6

    def result(self, key: str, threads: int, warmup: int) -> LatencyResult:
        import onnxruntime as ort

        return LatencyResult(
            path=self.path,
            stats=latency_stats(self.times, batch=int(self.array.shape[0])),
            times_ms=self.times.tolist(),
            input_shape=list(self.array.shape),
            provider=key,
            providers_used=self.session.get_providers(),
            threads=threads,
            warmup=warmup,
            onnxruntime_version=ort.__version__,
            cpu=cpu_model(),
            spinning=self.spin)


def measure_latencies(paths: Sequence[str],
                      shape: Optional[Sequence[int]] = None,
                      warmup: int = 50,
                      runs: int = 1000,
                      threads: Optional[int] = None,
                      provider: str = 'cpu',
                      progress: bool = True,
                      seed: int = 0,
                      interleave: bool = False,
                      spin: bool = False) -> List[LatencyResult]:
    """Time several ONNX files with the same settings.

    Args:
        paths (Sequence[str]): The ``.onnx`` files.
        interleave (bool): Alternate the files run by run (A B A B ...)
            instead of timing them one after the other, so that load from
            other processes on a shared machine hits all of them alike.
            Defaults to False.

    Other arguments are those of :func:`measure_latency`.

    Returns:
        list[LatencyResult]: One per file, in order.
    """
    from tqdm import tqdm

    key, threads = _check_settings(warmup, runs, threads, provider)
    if not isinstance(spin, bool):
        raise TypeError(f'`spin` should be a bool, but got {spin!r}')
    timed = [
        _Timed(p, shape, key, threads, seed, runs, spin) for p in paths
    ]
    for t in timed:
        for _ in tqdm(
                range(warmup),
                desc=f'warm-up {os.path.basename(t.path)}',
                disable=not progress,
                leave=False):
            t.run()
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        if interleave:
            for i in tqdm(
                    range(runs),
                    desc=f'timing {len(timed)} files, interleaved',
                    disable=not progress,
                    leave=False):
                for t in timed:
                    t.time(i)
        else:
            for t in timed:
                for i in tqdm(
                        range(runs),
                        desc=f'timing {os.path.basename(t.path)}',
                        disable=not progress,
                        leave=False):
                    t.time(i)
    finally:
        if gc_was_on:
            gc.enable()
    return [t.result(key, threads, warmup) for t in timed]


def measure_latency(path: str,
                    shape: Optional[Sequence[int]] = None,
                    warmup: int = 50,
                    runs: int = 1000,
                    threads: Optional[int] = None,
                    provider: str = 'cpu',
                    progress: bool = True,
                    seed: int = 0,
                    spin: bool = False) -> LatencyResult:
    """Time ``runs`` inferences of an ONNX file after ``warmup`` ones.

    Args:
        path (str): The ``.onnx`` file.
        shape (Sequence[int], optional): Input shape (batch first); needed
            when the file's input has dynamic axes. Defaults to the file's.
        warmup (int): Untimed runs first. Defaults to 50.
        runs (int): Timed runs. Defaults to 1000.
        threads (int, optional): Intra-op threads. Defaults to the number of
            cores this process may use (:func:`default_threads`).
        provider (str): ``'cpu'``, ``'cuda'`` or ``'tensorrt'``. Defaults to
            ``'cpu'``.
        progress (bool): Show a progress bar. Defaults to True.
        seed (int): Seed of the random input. Defaults to 0.
        spin (bool): Let idle intra-op threads busy-wait between ops and
            runs (onnxruntime's default). Off by default: with as many
            threads as cores, spinning threads take the cores from the
            next run's (and from other sessions in an interleaved
            comparison). On 2 cores, ResNet-50 took 60.5 ms spinning and
            53.9 ms not; interleaved with its pruned copy, 101 ms vs 59 ms.

    Returns:
        LatencyResult: Statistics, raw times and the set-up.

    Raises:
        ValueError: Bad counts, or an unknown provider.
        RuntimeError: The provider is not available in this onnxruntime.
    """
    return measure_latencies([path], shape, warmup, runs, threads, provider,
                             progress, seed, spin=spin)[0]
