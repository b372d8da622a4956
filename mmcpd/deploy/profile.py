"""Where an ONNX model spends its time: onnxruntime's profiler, per node.

Node names of ``torch.onnx`` exports follow module paths
(``/backbone/layer1/layer1.0/conv1/Conv``), so the nodes of a model and of
its pruned copy pair up by name: :func:`compare_profiles` shows which
layers got faster by how much, next to how much their weights shrank.

The profiled nodes are those of the graph onnxruntime optimised for this
CPU, which differs from CPU to CPU: with ``ORT_ENABLE_ALL`` its NCHWc
layout transform runs convolutions on channels in blocks of the vector
width (8 floats with AVX2, 16 with AVX-512), padding a layer of 40
channels to 40 or 48, and names the rewritten nodes after the tensors they
write (``.../Relu_output_0_nchwc`` for a Conv fused with its ReLU); other
fusions append to the name (``.../MatMul/MatMulAddFusion``). So the MACs
of a profiled node are not read from the shapes it ran with: they are the
MACs of the exported graph's Conv, Gemm or MatMul node that it runs
(counted by :func:`~mmcpd.deploy.complexity.onnx_node_macs`), found by its
name. They are the same on every CPU; the times are not.
"""
import json
import os
import os.path as osp
import tempfile
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from mmcpd.deploy.complexity import onnx_node_macs
from mmcpd.deploy.latency import PROVIDERS, _check_settings, _input_array

#: Suffix of the nodes that onnxruntime's NCHWc transform writes.
_NCHWC = '_nchwc'
#: Parts of onnxruntime's op names for the nodes that run a product
#: (``Conv``, ``FusedConv``, ``Gemm``, ``FusedGemm``, ``FusedMatMul``, ...).
_PRODUCT_KINDS = ('Conv', 'Gemm', 'MatMul')
#: Exported ops that onnxruntime fuses into the product before them.
_FUSED_INTO_PRODUCTS = ('Relu', 'Clip', 'Sigmoid', 'HardSigmoid',
                        'LeakyRelu', 'Tanh', 'HardSwish', 'Add', 'Sum',
                        'Mul', 'Div', 'BatchNormalization')


@dataclass(frozen=True)
class NodeTime:
    """Mean kernel time of one node (after graph optimisation).

    Attributes:
        op (str): Op type, e.g. ``Conv`` (NCHWc convs included).
        ms (float): Mean milliseconds per run.
        macs (int): Multiply-accumulates of the exported graph's Conv,
            Gemm or MatMul node that this node runs (the same on every
            CPU, see the module's docstring), else 0.
    """
    op: str
    ms: float
    macs: int


def _origin(name: str, nodes: Dict[str, object],
            producers: Dict[str, str]) -> Optional[str]:
    """The exported node that a profiled node was made from, by name."""
    if name in nodes:
        return name
    base = name[:-len(_NCHWC)] if name.endswith(_NCHWC) else name
    if base in producers:  # named after the tensor it writes
        return producers[base]
    best = None  # a fusion: '<node name>/<fusion>'
    for node in nodes:
        if name.startswith(node + '/') and (best is None
                                            or len(node) > len(best)):
            best = node
    return best


def _upstream_product(start: str, nodes: Dict[str, object],
                      producers: Dict[str, str], macs: Dict[str, int],
                      taken: set) -> Optional[str]:
    """The nearest product node above ``start`` not yet taken: the Conv
    of a Conv + Add + ReLU that onnxruntime fused and named after the
    ReLU's output."""
    queue, seen = deque([start]), {start}
    while queue:
        name = queue.popleft()
        if name in macs and name not in taken:
            return name
        if nodes[name].op_type not in _FUSED_INTO_PRODUCTS:
            continue  # another product, or an op no fusion takes in
        for tensor in nodes[name].input:
            up = producers.get(tensor)
            if up is not None and up not in seen:
                seen.add(up)
                queue.append(up)
    return None


def attribute_macs(names: Iterable[Tuple[str, str]], graph,
                   macs: Dict[str, int]) -> Dict[str, int]:
    """MACs of the profiled nodes, from the exported graph.

    Each Conv, Gemm or MatMul node of the exported graph gives its MACs to
    the one profiled product node made from it: the node of its name, or
    named after its output tensor (NCHWc), or a fusion of it
    (``<name>/...``); a product node named after a fused activation or
    sum gets the nearest product node above it.

    Args:
        names (Iterable[tuple[str, str]]): ``(node name, op type)`` of the
            profiled nodes.
        graph (onnx.GraphProto): The exported graph.
        macs (dict[str, int]): MACs of its product nodes, by name.

    Returns:
        dict[str, int]: MACs by profiled node name (0 for the others).
    """
    nodes = {node.name: node for node in graph.node}
    producers = {t: node.name for node in graph.node for t in node.output}
    names = list(names)
    out = {name: 0 for name, _ in names}
    runs_product = [
        name for name, op in names if any(k in op for k in _PRODUCT_KINDS)
    ]
    origins = {name: _origin(name, nodes, producers) for name in runs_product}
    taken = set()
    later = []
    for name in runs_product:  # named after their product node first
        origin = origins[name]
        if origin in macs and origin not in taken:
            out[name] = macs[origin]
            taken.add(origin)
        elif origin is not None:
            later.append(name)
    for name in later:  # then those named after what was fused into them
        found = _upstream_product(origins[name], nodes, producers, macs,
                                  taken)
        if found is not None:
            out[name] = macs[found]
            taken.add(found)
    return out


def profile_nodes(path: str,
                  shape: Optional[Sequence[int]] = None,
                  warmup: int = 10,
                  runs: int = 50,
                  threads: Optional[int] = None,
                  provider: str = 'cpu') -> Dict[str, NodeTime]:
    """Mean kernel time per run of every node, by node name.

    The file runs ``warmup + runs`` times in one profiled session (graph
    optimisations on, so nodes are those after fusion); the first
    ``warmup`` runs of every node are dropped. MACs come from the exported
    graph (:func:`attribute_macs`), not from the optimised one.

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
    from mmcpd.deploy.onnx_export import make_session

    key, threads = _check_settings(warmup, runs, threads, provider)
    with tempfile.TemporaryDirectory() as folder:
        session = make_session(
            path,
            PROVIDERS[key],
            threads=threads,
            profile_prefix=osp.join(folder, 'profile'),
            spin=False)
        array = _input_array(session, shape, 0)
        feed = {session.get_inputs()[0].name: array}
        for _ in range(warmup + runs):
            session.run(None, feed)
        trace = session.end_profiling()
        with open(trace) as f:
            events = json.load(f)
        os.remove(trace)
    durations: Dict[str, List[float]] = defaultdict(list)
    ops = {}
    for event in events:
        name = event.get('name', '')
        if event.get('cat') != 'Node' or not name.endswith('_kernel_time'):
            continue
        name = name[:-len('_kernel_time')]
        durations[name].append(float(event['dur']))
        ops[name] = event.get('args', {}).get('op_name', '?')
    graph, graph_macs = onnx_node_macs(path, array.shape)
    macs = attribute_macs(ops.items(), graph, graph_macs)
    out = {}
    for name, times in durations.items():
        counted = times[warmup:] or times
        out[name] = NodeTime(ops[name], sum(counted) / len(counted) / 1e3,
                             macs[name])
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
