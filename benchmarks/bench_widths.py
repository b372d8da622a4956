"""Free widths vs mmcpd's width rule: ONNX latency and kernel layout.

    python benchmarks/bench_widths.py [CONFIG@SIZE ...] [--runs 100]
        [--ratio 0.3] [--round-to 8] [--out bench_widths.json]

Each model (random weights, randomised norms) loses ``ratio`` of the units
of every prunable group at random, once at free widths and once with the
width rule (:mod:`mmcpd.prune.widths`). Per variant: FLOPs speedup, the
speedup of the median latency (onnxruntime, 1 thread, batch 1, the three
files interleaved run by run), and the layout of onnxruntime's optimised
graph: convolutions it runs in the blocked NCHWc layout, convolutions left
in NCHW and the reorders between the two (deterministic on a given CPU,
unlike the times on a shared machine).
"""
import argparse
import collections
import copy
import json
import os.path as osp
import tempfile
import warnings

import torch

MODELS = [
    'mmpretrain::mobilenet_v3/mobilenet-v3-small-050_8xb128_in1k.py@128',
    'mmpretrain::convmixer/convmixer-1024-20_10xb64_in1k.py@128',
    'mmpretrain::mobileone/mobileone-s0_8xb32_in1k.py@128',
    'mmpretrain::van/van-tiny_8xb128_in1k.py@128',
    'mmpretrain::regnet/regnetx-400mf_8xb128_in1k.py@128',
]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('configs', nargs='*', default=MODELS)
    parser.add_argument('--ratio', type=float, default=0.3)
    parser.add_argument('--round-to', type=int, default=8)
    parser.add_argument('--runs', type=int, default=100)
    parser.add_argument('--out', default='bench_widths.json')
    return parser.parse_args()


def graph_layout(path: str) -> dict:
    """Convs in NCHWc and NCHW, and reorders, in onnxruntime's optimised
    graph of ``path``."""
    import onnx
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.optimized_model_filepath = path + '.opt'
    options.log_severity_level = 3
    ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    counts = collections.Counter()
    for node in onnx.load(path + '.opt').graph.node:
        if node.op_type in ('Conv', 'FusedConv'):
            blocked = node.domain == 'com.microsoft.nchwc'
            counts['nchwc_convs' if blocked else 'nchw_convs'] += 1
        elif node.op_type.startswith('Reorder'):
            counts['reorders'] += 1
    return dict(counts)


def bench(entry: str, args, folder: str) -> dict:
    import mmcpd
    from bench_latency_speedup import speedup  # next to this file

    from mmcpd.apis import build_model_from_cfg
    from mmcpd.testing.coverage import random_rounded_units
    from mmcpd.deploy import export_onnx, model_complexity
    from mmcpd.deploy.latency import measure_latencies
    from mmcpd.prune.surgery.physical import prune_units
    from mmcpd.prune.surgery.verify import randomize_model
    from mmcpd.utils.config import input_shape, load_config

    config, _, size = entry.rpartition('@')
    cfg = load_config(config)
    base = randomize_model(build_model_from_cfg(cfg), 0).eval()
    x = torch.randn(*input_shape(cfg, int(size)))
    result = mmcpd.comb_model(base, x)
    models = {'original': base}
    for name, round_to in (('free', 1), ('rule', args.round_to)):
        model = copy.deepcopy(base)
        prune_units(model, result,
                    random_rounded_units(result, model, args.ratio,
                                         round_to))
        models[name] = model
    paths = {n: export_onnx(m, x, osp.join(folder, f'{n}.onnx'))
             for n, m in models.items()}
    flops = {n: model_complexity(m, x)['flops'] for n, m in models.items()}
    timed = measure_latencies(list(paths.values()), warmup=10,
                              runs=args.runs, threads=1, progress=False,
                              interleave=True)
    median = {n: t.stats.median_ms for n, t in zip(paths, timed)}
    row = dict(config=entry, median_ms=median,
               layout={n: graph_layout(p) for n, p in paths.items()})
    for name in ('free', 'rule'):
        row[name] = speedup(flops, median, name, 'original')
    return row


def main():
    args = parse_args()
    warnings.simplefilter('ignore')
    folder = tempfile.mkdtemp()
    rows = []
    for entry in args.configs:
        rows.append(bench(entry, args, folder))
        r = rows[-1]
        print(f"{entry.split('/')[-1]}: free {r['free']}, rule {r['rule']}; "
              f"layout {r['layout']}", flush=True)
        with open(args.out, 'w') as f:
            json.dump(rows, f, indent=1)


if __name__ == '__main__':
    main()
