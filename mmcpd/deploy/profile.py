"""Where an ONNX model spends its time: onnxruntime's profiler, per node.

Node names of ``torch.onnx`` exports follow module paths
(``/backbone/layer1/layer1.0/conv1/Conv``), so the nodes of a model and of
its pruned copy pair up by name: :func:`compare_profiles` shows which
layers got faster by how much, next to how much their weights shrank.
"""
import json
import os
import os.path as osp
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from .latency import PROVIDERS, _check_settings, _input_array


@dataclass(frozen=True)
class NodeTime:
    """Mean kernel time of one node (after graph optimisation).

    Attributes:
        op (str): Op type, e.g. ``Conv`` (NCHWc convs included).
        ms (float): Mean milliseconds per run.
        macs (int): Multiply-accumulates of a Conv, Gemm or MatMul node
            (from its input and output shapes), else 0.
    """
    op: str
    ms: float
    macs: int


def _shapes(entries: list) -> List[List[int]]:
    return [[int(d) for d in next(iter(e.values()))] for e in entries]


def _macs(op: str, inputs: List[List[int]], outputs: List[List[int]]) -> int:
    """MACs of a node from its shapes; 0 for ops that are not products."""
    if not outputs or len(inputs) < 2:
        return 0
    out = outputs[0]
    numel = 1
    for d in out:
        numel *= d
    if 'Conv' in op and len(out) > 1 and out[1]:
        weight = 1
        for d in inputs[1]:
            weight *= d
        return weight * numel // out[1]  # N x spatial x (Cout Cin k k / g)
    if 'Gemm' in op or 'MatMul' in op:
        return numel * inputs[0][-1]
    return 0


def profile_nodes(path: str,
                  shape: Optional[Sequence[int]] = None,
                  warmup: int = 10,
                  runs: int = 50,
                  threads: Optional[int] = None,
                  provider: str = 'cpu') -> Dict[str, NodeTime]:
    """Mean kernel time per run of every node, by node name.

    The file runs ``warmup + runs`` times in one profiled session (graph
    optimisations on, so nodes are those after fusion); the first
    ``warmup`` runs of every node are dropped.

    Args:
        path (str): The ``.onnx`` file.
        shape (Sequence[int], optional): Input shape; None takes the file's
            (static) one.
        warmup (int): Runs not counted. Defaults to 10.
        runs (int): Runs averaged. Defaults to 50.
        threads (int, optional): Intra-op threads; None uses every core
            this process may run on.
        provider (str): Execution provider key of ``PROVIDERS``.

    Returns:
        dict[str, NodeTime]: Node name (without ``_kernel_time``) to its
        time, in execution order.
    """
    from .onnx_export import make_session

    key, threads = _check_settings(warmup, runs, threads, provider)
    with tempfile.TemporaryDirectory() as folder:
        session = make_session(
            path,
            PROVIDERS[key],
            threads=threads,
            profile_prefix=osp.join(folder, 'profile'),
            spin=False)
        feed = {session.get_inputs()[0].name: _input_array(session, shape, 0)}
        for _ in range(warmup + runs):
            session.run(None, feed)
        trace = session.end_profiling()
        with open(trace) as f:
            events = json.load(f)
        os.remove(trace)
    durations: Dict[str, List[float]] = defaultdict(list)
    meta = {}
    for event in events:
        name = event.get('name', '')
        if event.get('cat') != 'Node' or not name.endswith('_kernel_time'):
            continue
        name = name[:-len('_kernel_time')]
        durations[name].append(float(event['dur']))
        args = event.get('args', {})
        op = args.get('op_name', '?')
        meta[name] = (op,
                      _macs(op, _shapes(args.get('input_type_shape', [])),
                            _shapes(args.get('output_type_shape', []))))
    out = {}
    for name, times in durations.items():
        counted = times[warmup:] or times
        op, macs = meta[name]
        out[name] = NodeTime(op, sum(counted) / len(counted) / 1e3, macs)
    return out


def split_time(nodes: Dict[str, NodeTime]) -> Dict[str, float]:
    """Milliseconds in products (Conv, Gemm, MatMul: what FLOPs count) and
    in everything else."""
    products = sum(n.ms for n in nodes.values() if n.macs)
    return dict(products=products,
                other=sum(n.ms for n in nodes.values()) - products)


def by_op_type(nodes: Dict[str, NodeTime]) -> Dict[str, float]:
    """Milliseconds per op type, largest first."""
    totals: Dict[str, float] = defaultdict(float)
    for node in nodes.values():
        totals[node.op] += node.ms
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def compare_profiles(base: Dict[str, NodeTime],
                     pruned: Dict[str, NodeTime]) -> List[dict]:
    """Per node of both profiles: times, latency and FLOPs speedups.

    Nodes only one model has are left out.

    Returns:
        list[dict]: One row per node, slowest baseline node first.
    """
    rows = []
    for name, b in base.items():
        p = pruned.get(name)
        if p is None:
            continue
        rows.append(
            dict(
                node=name,
                op=b.op,
                base_ms=b.ms,
                pruned_ms=p.ms,
                base_macs=b.macs,
                pruned_macs=p.macs,
                latency_speedup=b.ms / p.ms if p.ms > 0 else None,
                flops_speedup=b.macs / p.macs if p.macs else None))
    return sorted(rows, key=lambda r: -r['base_ms'])
