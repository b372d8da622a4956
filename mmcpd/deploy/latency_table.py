"""Measured per-layer latency tables, cached per machine.

For each conv and linear layer that a model's deployed forward calls, a
one-layer ONNX graph is built at a grid of (in, out) widths (weight dims 1
and 0) and timed in onnxruntime with :mod:`mmcpd.deploy.latency`'s
conventions: all graph optimisations on, fixed intra-op threads, no
spinning, the grid's files timed interleaved; on the CPU, each node's
fastest run is kept, the layout changes a one-layer graph needs left out,
and the whole model's time is the sum of its nodes' fastest runs; on the
CUDA and TensorRT providers, whose per-node profiler times are kernel
launches rather than kernels, each file's fastest whole run is kept
(:func:`_time_files`).
Layers with the same shape (kind, kernel, stride, input size, widths) are
timed once. The whole model is exported and timed too: what the layers do not
explain (norms, activations, adds, attention matmuls, resizes) is the
table's ``rest_ms``, which :class:`~mmcpd.prune.cost.latency.LatencyCost`
scales with the latency proxy.

The table is plain JSON-able data. Measurements are cached in
``~/.cache/mmcpd/latency/<key>.json`` (``$MMCPD_CACHE`` replaces
``~/.cache/mmcpd``), one file per machine: CPU model, instruction sets
(avx2, avx512f, ...), onnxruntime version, threads and provider (and, on
the CUDA and TensorRT providers, the GPU model) are in the file and in its
key, so a second run on the same machine is instant and a table is never
reused on another.

With ``widths=True`` every layer shape is also timed at the widths of
:func:`width_windows` along each prunable axis (the other at its full
width): all widths up to the coarsest kernel block (16) and one block's
every width around half the layer's width, the windows
:func:`~mmcpd.prune.widths.measured_rule` decides each group's channel
multiple and floor from (``round_to='measured'``,
``min_channels='measured'``). They are cached with the grid, per layer
shape and machine.

Timings taken while other jobs run are not the idle machine's, fastest runs
or not: at a load of 13 on 2 cores, SegFormer-B0's layers summed to 81 ms
against 21 ms idle, and a table off by that much misplaces the budget. So
every entry records the load average it was measured at; measuring on a
busy machine (load above :data:`BUSY_LOAD` times the cores) warns, and an
entry measured busy is measured again once the machine is quiet.

Examples:
    >>> table = latency_table(model, torch.randn(1, 3, 224, 224), threads=2)
    >>> table['model_ms'], len(table['layers'])
"""
import hashlib
import json
import os
import os.path as osp
import tempfile
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from mmcpd.deploy.latency import (PROVIDERS, _bind, _check_settings,
                                  cache_root, cpu_model, gpu_model)
from mmcpd.prune.settings import is_table
from mmcpd.prune.widths import QUANTA
from mmcpd.utils.module import Forward, callable_name

__all__ = [
    'latency_table', 'machine_info', 'width_grid', 'width_windows',
    'collect_layers'
]

#: Instruction set flags of /proc/cpuinfo that change kernel speed.
_ISA_FLAGS = ('avx', 'avx2', 'fma', 'avx512f', 'avx512bw', 'avx512_vnni',
              'avx512_bf16', 'amx_tile', 'neon', 'asimd')
#: 3: nodes' fastest runs (profiled), not medians; 4: entries record the
#: load they were measured at
_FORMAT = 4
#: Busy: a 1-minute load average above this many times the machine's cores
#: (the measuring process itself adds up to its threads).
BUSY_LOAD = 1.5


def machine_load() -> Tuple[float, int]:
    """The 1-minute load average and the machine's cores."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not on every platform
        load = 0.0
    return float(load), int(os.cpu_count() or 1)


def is_busy(load: float, cores: int) -> bool:
    """Whether timings taken at ``load`` on ``cores`` are not the idle
    machine's."""
    return load > BUSY_LOAD * cores


def machine_info(threads: int, provider: str = 'cpu') -> dict:
    """What a latency table depends on: CPU, instruction sets, runtime;
    on a GPU provider (``'cuda'``, ``'tensorrt'``), the GPU model and the
    execution provider too."""
    import onnxruntime as ort

    flags = set()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith(('flags', 'Features')):
                    flags = set(line.split(':', 1)[1].split())
                    break
    except OSError:
        pass
    info = dict(
        cpu=cpu_model(),
        isa=[f for f in _ISA_FLAGS if f in flags],
        onnxruntime=ort.__version__,
        threads=int(threads),
        provider=provider,
        format=_FORMAT)
    if provider != 'cpu':  # the CPU's keys stay as they were
        info.update(gpu=gpu_model(),
                    execution_provider=PROVIDERS[provider][0])
    return info


def _key(data) -> str:
    text = json.dumps(data, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def cache_dir() -> str:
    return osp.join(cache_root(), 'latency')


def width_grid(full: int, points: int, step: int = 8) -> List[int]:
    """``points`` widths from ``step`` to ``full``, multiples of ``step``.

    Examples:
        >>> width_grid(64, 3)
        [8, 32, 64]
    """
    if full <= step or points < 2:
        return [int(full)]
    grid = {int(full)}
    for k in range(points - 1):
        w = step + (full - step) * k / (points - 1)
        grid.add(int(min(full, max(step, round(w / step) * step))))
    return sorted(grid)


def width_windows(full: int, block: int = QUANTA[-1]) -> List[int]:
    """Widths at which a layer's axis is timed for the measured width rule:
    every width up to ``block`` (the floor), and every width of one block
    ending at the multiple of ``block`` nearest half of ``full`` (the
    multiple; kernels pad the same way at any width, and half is where
    pruning takes a layer). A layer of at most ``3 * block`` channels is
    timed at every width.

    Examples:
        >>> width_windows(40) == list(range(1, 41))
        True
        >>> w = width_windows(256); w[:2], w[16:18], w[-1]
        ([1, 2], [112, 113], 128)
    """
    full = int(full)
    if full <= 3 * block:
        return list(range(1, full + 1))
    anchor = min(max(2 * block, int(round(full / 2 / block)) * block),
                 full // block * block)
    return sorted(set(range(1, block + 1)) |
                  set(range(anchor - block, anchor + 1)))


def _window_axes(layer: dict) -> List[str]:
    """The weight axes a layer's windows are timed along: output and
    input, a depthwise conv's output only, none for a grouped conv (its
    widths go per conv group; the fixed rule stays)."""
    if layer.get('groups') == 'depthwise':
        return ['out']
    if layer.get('groups', 1) != 1:
        return []
    return ['out', 'in']


def _onnx_pads(conv: nn.Module) -> List[int]:
    """ONNX ``pads`` (all begins, then all ends) of a torch conv."""
    if conv.padding == 'valid':
        return [0] * (2 * len(conv.kernel_size))
    if conv.padding == 'same':
        total = [d * (k - 1)
                 for d, k in zip(conv.dilation, conv.kernel_size)]
        return [t // 2 for t in total] + [t - t // 2 for t in total]
    return list(conv.padding) * 2


def collect_layers(model: nn.Module, inputs: torch.Tensor,
                   forward: Forward = None) -> List[dict]:
    """Conv and linear layers the deployed forward (tensor mode, or
    ``forward(model, inputs)``) calls, with shapes.

    Returns:
        list[dict]: ``param`` (the weight's name), ``kind``, ``out`` and
        ``in`` (weight dims 0 and 1), ``groups`` (``'depthwise'`` when the
        groups follow the width), ``size`` (input spatial size, or tokens
        for linear layers), conv attributes, ``bias`` and ``calls``.
    """
    from mmcpd.deploy.adapter import TensorModeAdapter

    found: Dict[str, dict] = {}
    handles = []

    def hook(name, module):

        def record(_, args, __):
            x = args[0]
            w = module.weight
            if isinstance(module, nn.Linear):
                info = dict(kind='linear', size=[x.numel() // x.shape[-1]])
            else:
                dw = module.groups > 1 and module.groups == w.shape[0] \
                    and w.shape[1] == 1
                info = dict(
                    kind=f'conv{w.dim() - 2}d',
                    size=list(x.shape[2:]),
                    kernel=list(w.shape[2:]),
                    stride=list(module.stride),
                    dilation=list(module.dilation),
                    pads=_onnx_pads(module),
                    groups='depthwise' if dw else int(module.groups))
            info.update(param=f'{name}.weight', out=int(w.shape[0]),
                        bias=module.bias is not None)
            info['in'] = int(w.shape[1])
            if info['param'] in found:
                found[info['param']]['calls'] += 1
            else:
                found[info['param']] = dict(info, calls=1)

        return record

    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)) and \
                getattr(module, 'weight', None) is not None:
            handles.append(
                module.register_forward_hook(hook(name, module)))
    was_training = model.training
    try:
        with torch.no_grad():
            TensorModeAdapter(model, forward=forward)(inputs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return list(found.values())


def _signature(layer: dict) -> dict:
    return {k: v for k, v in layer.items() if k not in ('param', 'calls')}


def _layer_graph(layer: dict, w_in: int, w_out: int):
    """A one-layer ONNX model of ``layer`` at weight widths (in, out)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits, attrs = [], {}
    if layer['kind'] == 'linear':
        x_shape = [layer['size'][0], w_in]
        y_shape = [layer['size'][0], w_out]
        inits.append(numpy_helper.from_array(
            rng.standard_normal((w_out, w_in)).astype(np.float32), 'W'))
        op, attrs = 'Gemm', dict(transB=1)
    else:
        groups = w_out if layer['groups'] == 'depthwise' else \
            layer['groups']
        x_shape = [1, w_in * groups] + layer['size']
        inits.append(numpy_helper.from_array(
            rng.standard_normal([w_out, w_in] + layer['kernel']).astype(
                np.float32), 'W'))
        attrs = dict(kernel_shape=layer['kernel'], strides=layer['stride'],
                     dilations=layer['dilation'], group=groups,
                     pads=layer['pads'])
        op = 'Conv'
        y_shape = [1, w_out] + ['?'] * len(layer['size'])
    inputs = ['x', 'W']
    if layer['bias']:
        inits.append(numpy_helper.from_array(
            rng.standard_normal(w_out).astype(np.float32), 'B'))
        inputs.append('B')
    node = helper.make_node(op, inputs, ['y'], **attrs)
    graph = helper.make_graph(
        [node], 'layer',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, y_shape)],
        inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


#: Layout changes that a one-layer graph needs and a model does once, at
#: its ends (onnxruntime's NCHWc convs): not the layer's time.
_LAYOUT_OPS = ('ReorderInput', 'ReorderOutput')


def _node_mins(trace: str, skip_ops: Sequence[str], warmup: int,
               split: bool = False):
    """Sum over a profiled graph's nodes of each node's fastest run; with
    ``split``, that sum and the ``skip_ops`` nodes' sum."""
    from collections import defaultdict

    with open(trace) as f:
        events = json.load(f)
    os.remove(trace)
    times, skipped = defaultdict(list), defaultdict(list)
    for event in events:
        name = event.get('name', '')
        op = event.get('args', {}).get('op_name', '')
        if event.get('cat') == 'Node' and name.endswith('_kernel_time'):
            (skipped if op in skip_ops else times)[name].append(
                float(event['dur']) / 1e3)
    kept = float(sum(min(t[warmup:] or t) for t in times.values()))
    if not split:
        return kept
    return kept, float(sum(min(t[warmup:] or t) for t in skipped.values()))


def _time_files(paths: Sequence[str],
                provider: str,
                threads: int,
                budget_s: float,
                folder: str,
                min_runs: int = 10,
                max_runs: int = 100,
                skip_ops: Sequence[str] = _LAYOUT_OPS,
                split: bool = False) -> list:
    """Fastest ms of each file, timed interleaved (A B C A B C ...); with
    ``split``, pairs of that and the ``skip_ops`` nodes' ms (0 where the
    provider is not profiled).

    The fastest, not the median, and on the CPU per node (onnxruntime's
    profiler): a layer takes well under a millisecond, and on a shared
    machine most of its runs can lose a scheduler slice (the medians of
    neighbouring grid points of one conv read 0.3 and 41 ms at a load of 17
    on 2 cores), and no whole run of a large model escapes preemption while
    each of its nodes' fastest does (ResNet-50 at that load: fastest whole
    run 294 ms, its layers 110 ms). ``skip_ops`` nodes are not counted.

    On the CUDA and TensorRT providers the profiler's node times are those
    of the kernel launches on the host, not of the kernels: there each
    file's fastest whole run is kept, and ``skip_ops`` is ignored. A
    one-layer file's run includes a session run's fixed cost (launch,
    synchronisation), which a model pays once and its layers' sum once per
    layer: ``rest_ms`` can come out below zero there.
    """
    import time

    from mmcpd.deploy.onnx_export import make_session

    profiled = provider == 'cpu'
    sessions, binds = [], []
    for i, path in enumerate(paths):
        prefix = osp.join(folder, f'trace{i}') if profiled else None
        session = make_session(path, PROVIDERS[provider], threads=threads,
                               profile_prefix=prefix, spin=False)
        meta = session.get_inputs()[0]
        array = np.random.default_rng(0).standard_normal(
            meta.shape).astype(np.float32)
        sessions.append(session)
        binds.append(_bind(session, array, 'cpu' if provider == 'cpu'
                           else 'cuda'))

    fastest = [float('inf')] * len(sessions)

    def one_round(timed: bool = not profiled):
        for k, (session, (binding, _)) in enumerate(zip(sessions, binds)):
            start = time.perf_counter_ns()
            session.run_with_iobinding(binding)
            binding.synchronize_outputs()
            if timed:
                ms = (time.perf_counter_ns() - start) / 1e6
                fastest[k] = min(fastest[k], ms)

    for _ in range(2):  # warm-up: allocations, first-run kernels, engines
        one_round(timed=False)
    start = time.perf_counter()
    one_round()
    per_round = max(time.perf_counter() - start, 1e-6)
    runs = int(min(max_runs, max(min_runs, budget_s / per_round)))
    for _ in range(runs - 1):
        one_round()
    if not profiled:
        return [(t, 0.0) for t in fastest] if split else fastest
    return [
        _node_mins(session.end_profiling(), skip_ops, 2, split)
        for session in sessions
    ]


def _measure_layer(layer: dict, provider: str, threads: int,
                   budget_s: float, folder: str) -> dict:
    import onnx

    grid_in, grid_out = layer['grid_in'], layer['grid_out']
    paths = []
    for i, w_in in enumerate(grid_in):
        for j, w_out in enumerate(grid_out):
            path = osp.join(folder, f'l{i}_{j}.onnx')
            onnx.save(_layer_graph(layer, w_in, w_out), path)
            paths.append(path)
    flat = _time_files(paths, provider, threads, budget_s, folder)
    return dict(ms=np.asarray(flat).reshape(len(grid_in),
                                            len(grid_out)).tolist())


def _with_layout(widths: Sequence[int], pairs: Sequence[tuple]
                 ) -> List[float]:
    """A one-layer graph's time as in a model of blocked-layout layers.

    onnxruntime runs a conv in the NCHWc layout only at some widths; a
    one-layer graph on that path reorders its input and output (not timed:
    a model does it once), and one off it reorders nothing, so alone it
    looks cheap. In a model it is the other way round: the layer off the
    path has its feature maps reordered out of and back into the blocked
    layout of its neighbours. So a width whose graph has no layout nodes
    while others of the window have them is charged those of the nearest
    width that has them, scaled by the width (a 1x1 conv of 15 inputs
    between blocked layers pays what one of 16 reorders).
    """
    blocked = [(w, layout) for w, (_, layout) in zip(widths, pairs)
               if layout > 0]
    out = []
    for w, (ms, layout) in zip(widths, pairs):
        if layout <= 0 and blocked:
            near, cost = min(blocked, key=lambda b: abs(b[0] - w))
            ms += cost * w / near
        out.append(float(ms))
    return out


def _measure_windows(layer: dict, provider: str, threads: int,
                     budget_s: float, folder: str) -> dict:
    """The layer timed at :func:`width_windows` along each axis of
    :func:`_window_axes`, all graphs interleaved, a width off the blocked
    layout charged its layout changes (:func:`_with_layout`)."""
    import onnx

    axes, paths = [], []
    for axis in _window_axes(layer):
        widths = width_windows(layer[axis])
        for w in widths:
            w_in, w_out = (layer['in'], w) if axis == 'out' else \
                (w, layer['out'])
            path = osp.join(folder, f'w{axis}{w}.onnx')
            onnx.save(_layer_graph(layer, w_in, w_out), path)
            paths.append(path)
        axes.append((axis, widths))
    flat = _time_files(paths, provider, threads, budget_s, folder,
                       split=True) if paths else []
    out, start = {}, 0
    for axis, widths in axes:
        out[axis] = dict(w=widths, ms=_with_layout(
            widths, flat[start:start + len(widths)]))
        start += len(widths)
    return out


def _load(path: str, info: dict) -> dict:
    if osp.exists(path):
        with open(path) as f:
            data = json.load(f)
        if data.get('machine') == info:
            return data
    return dict(machine=info, layers={}, models={})


def _save(path: str, data: dict) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    tmp = f'{path}.{os.getpid()}.tmp'
    with open(tmp, 'w') as f:
        json.dump(data, f)
    os.replace(tmp, path)


def _model_ms(model, inputs, provider, threads, forward=None) -> float:
    from mmcpd.deploy.onnx_export import export_onnx

    with tempfile.TemporaryDirectory() as folder:
        path = export_onnx(model, inputs, osp.join(folder, 'model.onnx'),
                           forward=forward)
        return _time_files([path], provider, threads, 0.0, folder,
                           min_runs=20, skip_ops=())[0]


def latency_table(model: nn.Module,
                  inputs: torch.Tensor,
                  threads: Optional[int] = None,
                  provider: str = 'cpu',
                  points: int = 6,
                  step: int = 8,
                  budget_s: float = 0.5,
                  cache: Optional[str] = None,
                  refresh: bool = False,
                  progress: bool = False,
                  forward: Forward = None,
                  widths: bool = False) -> dict:
    """The measured latency table of ``model`` on this machine.

    Args:
        model (nn.Module): An MMPretrain classifier, MMSeg segmentor or
            plain module (its deployed tensor-mode forward is timed).
        inputs (torch.Tensor): Example input, e.g. ``(1, 3, 224, 224)``.
        threads (int, optional): onnxruntime intra-op threads. Defaults to
            the cores this process may use.
        provider (str): ``'cpu'``, ``'cuda'`` or ``'tensorrt'``. Defaults
            to ``'cpu'``.
        points (int): Grid widths per dim, from ``step`` to the full width.
            Defaults to 6.
        step (int): Grid widths are multiples of it. Defaults to 8.
        budget_s (float): Seconds of timing per layer shape (10 to 100
            interleaved rounds). Defaults to 0.5.
        cache (str, optional): Cache folder. Defaults to
            ``~/.cache/mmcpd/latency``.
        refresh (bool): Measure again, ignoring the cache. Defaults to
            False.
        progress (bool): A progress bar over layer shapes. Defaults to
            False.
        forward (str | callable, optional): What is deployed,
            ``forward(model, inputs)`` or its import path (as
            :class:`~mmcpd.deploy.TensorModeAdapter` takes it). Defaults to
            None: tensor mode.
        widths (bool): Also time every layer shape at the widths of
            :func:`width_windows` (the measured width rule's). Defaults to
            False.

    Returns:
        dict: ``machine`` (what the numbers depend on), ``input_shape``,
        ``model_ms`` (the whole model), ``rest_ms`` (``model_ms`` minus
        the layers' sum at full width), ``load`` (the highest load average
        an entry was measured at, the cores, and whether that was busy)
        and ``layers``: one entry per layer
        with its shape, ``grid_in``/``grid_out`` widths (weight dims 1 and
        0) and ``ms[i][j]``, the fastest time at ``grid_in[i]``,
        ``grid_out[j]``; with ``widths``, also ``widths``: per axis
        (``'out'``, ``'in'``) the widths ``w`` and times ``ms``.
    """
    from tqdm import tqdm

    if not isinstance(points, int) or points < 2:
        raise ValueError(f'`points` should be an int >= 2, but got '
                         f'{points!r}')
    key, threads = _check_settings(0, 1, threads, provider)
    info = machine_info(threads, key)
    path = osp.join(cache or cache_dir(), f'{_key(info)}.json')
    data = dict(machine=info, layers={}, models={}) if refresh else _load(
        path, info)
    layers = collect_layers(model, inputs, forward)
    load, cores = machine_load()
    busy = is_busy(load, cores)

    def stale(entry: Optional[dict]) -> bool:
        # missing, or measured busy while the machine is quiet now
        return entry is None or (not busy and is_busy(entry['load'], cores))

    todo, windows = {}, {}
    data.setdefault('widths', {})
    for layer in layers:
        layer['grid_out'] = width_grid(layer['out'], points, step)
        layer['grid_in'] = [layer['in']] if layer.get('groups') == \
            'depthwise' else width_grid(layer['in'], points, step)
        sig = _key(_signature(layer))
        layer['key'] = sig
        if stale(data['layers'].get(sig)):
            todo[sig] = layer
        if widths and stale(data['widths'].get(sig)):
            windows[sig] = layer
    shapes = [(k, list(v.shape)) for k, v in model.named_parameters()]
    model_key = _key([type(model).__name__, shapes, list(inputs.shape)] +
                     ([callable_name(forward)] if forward else []))
    measure_model = stale(data['models'].get(model_key))
    if busy and (todo or windows or measure_model):
        warnings.warn(
            f'mmcpd.latency_table: the machine is busy (load average '
            f'{load:.1f} on {cores} cores); latencies measured now can be '
            "several times the idle machine's and misplace the pruning "
            'budget. They are marked and measured again when the machine '
            'is quiet; or stop the other jobs and pass `refresh=True`.',
            stacklevel=2)
    with tempfile.TemporaryDirectory() as folder:
        for sig, layer in tqdm(todo.items(), desc='latency table',
                               disable=not progress):
            data['layers'][sig] = dict(
                _measure_layer(layer, key, threads, budget_s, folder),
                load=round(machine_load()[0], 2))
        for sig, layer in tqdm(windows.items(), desc='width windows',
                               disable=not progress):
            data['widths'][sig] = dict(
                _measure_windows(layer, key, threads, budget_s, folder),
                load=round(machine_load()[0], 2))
    changed = bool(todo) or bool(windows) or refresh or not osp.exists(path)
    if measure_model:
        data['models'][model_key] = dict(
            ms=_model_ms(model, inputs, key, threads, forward),
            load=round(machine_load()[0], 2))
        changed = True
    if changed:
        _save(path, data)
    entries = []
    for layer in layers:
        entry = {k: v for k, v in layer.items() if k != 'key'}
        entry['ms'] = data['layers'][layer['key']]['ms']
        if widths:
            entry['widths'] = {
                k: v
                for k, v in data['widths'][layer['key']].items()
                if k != 'load'
            }
        entries.append(entry)
    model_ms = data['models'][model_key]['ms']
    full = sum(e['ms'][-1][-1] * e['calls'] for e in entries)
    worst = max([data['models'][model_key]['load']] +
                [data['layers'][e['key']]['load'] for e in layers] +
                [data['widths'][e['key']]['load']
                 for e in layers if widths])
    return dict(machine=info, input_shape=list(inputs.shape),
                model_ms=model_ms, rest_ms=model_ms - full, cache=path,
                load=dict(max=worst, cores=cores,
                          busy=is_busy(worst, cores)),
                layers=entries)


def table_for(model: nn.Module, inputs: torch.Tensor,
              table: Optional[dict] = None,
              forward: Forward = None) -> dict:
    """``table`` if it is a measured table, else one measured (or read from
    the cache) by :func:`latency_table` with ``table`` as its keyword
    arguments, through ``forward``."""
    if is_table(table):
        return table
    return latency_table(model, inputs, forward=forward, **(table or {}))
