"""Does ONNX latency follow FLOPs? Pruned to half the FLOPs vs unpruned.

    python benchmarks/bench_latency_speedup.py [--runs 200] [--threads 2]
        [--batch 1] [--round-to 1 8 16 32] [--target 0.5]
        [--models resnet50 ...] [--out latency_speedup.json]

For each model (ResNet-50, MobileNetV2, DeiT-S at 224, SegFormer-B0 at 256,
random weights), ``mmcpd.prune_model(..., target=0.5)`` removes half of the
FLOPs as one CPDHook step does (units of all groups ranked by magnitude per
FLOP, at most 90% of a group, at least ``round_to`` channels), once per
channel rounding. The baseline and all pruned ONNX files are timed
interleaved in onnxruntime (graph optimisations on, fixed intra-op
threads); the report gives, per rounding, FLOPs speedup, latency speedup
(of the medians) and their ratio, which should be close to 1. With
``--uniform``, every group also loses the same fraction of its units (no
ranking) for comparison; ``--profile RUNS`` adds per-node profiles.

With ``--metric latency`` the target is measured latency instead: a latency
table of each model is measured on this machine (or read from the cache,
``mmcpd.deploy.latency_table``) and ``prune_model(..., metric='latency',
target=0.5)`` removes half of the predicted latency (widths x8); for
comparison, ``flops@lat`` is FLOPs-targeted pruning (ranked per FLOP) to the
same predicted latency, so the two keep FLOPs at equal latency.
"""
import argparse
import copy
import json
import os.path as osp
import tempfile
import warnings

import torch

MODELS = [
    ('mmpretrain::resnet/resnet50_8xb32_in1k.py', 224),
    ('mmpretrain::mobilenet_v2/mobilenet-v2_8xb32_in1k.py', 224),
    ('mmpretrain::deit/deit-small_4xb256_in1k.py', 224),
    ('mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py', 256),
]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--target', type=float, default=0.5,
                        help='fraction of the FLOPs to remove')
    parser.add_argument('--round-to', type=int, nargs='+',
                        default=[1, 8, 16])
    parser.add_argument('--act-weight', type=float, nargs='*', default=[],
                        help="also rank units by mmcpd's latency proxy "
                        '(rank_by="latency_proxy") with these MACs per '
                        'written activation element, widths rounded to 8')
    parser.add_argument('--uniform', action='store_true',
                        help='also prune every group by the same ratio, '
                        '1 - sqrt(1 - target), rounded to 8 (most layers\' '
                        'FLOPs scale with the square of the kept fraction)')
    parser.add_argument('--metric', default='flops',
                        choices=['flops', 'latency'],
                        help='what the target counts; latency: measured '
                        'per-layer latency tables (only the latency and '
                        'flops@lat variants are pruned)')
    parser.add_argument('--points', type=int, default=6,
                        help='latency table widths per layer dim')
    parser.add_argument('--runs', type=int, default=200)
    parser.add_argument('--warmup', type=int, default=50)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--spin', action='store_true',
                        help="onnxruntime's busy-waiting threads (its "
                        'default; off in mmcpd)')
    parser.add_argument('--sequential', action='store_true',
                        help='time the files one after the other, not '
                        'interleaved')
    parser.add_argument('--out', default='latency_speedup.json')
    parser.add_argument('--models', nargs='*', default=None,
                        help='substrings of the configs to run')
    parser.add_argument('--profile', type=int, default=0, metavar='RUNS',
                        help="also profile every node in onnxruntime over "
                        "RUNS runs: time in products (Conv/Gemm/MatMul) vs "
                        "the rest, and each node's latency vs FLOPs speedup")
    return parser.parse_args()


def _select(base, result, cost, target):
    """Units to remove, as ``prune_model(target=..., round_to=8)`` picks
    them (magnitude importance)."""
    from mmcpd.prune.selection import Guards, select_units
    from mmcpd.registry import IMPORTANCES

    scorer = IMPORTANCES.build(dict(type='magnitude'))
    scorer.setup(base, result.prunable)
    return select_units(result.prunable, scorer.scores(), cost, {}, target,
                        Guards(8, 0.9, 8))


def latency_variants(base, x, result, args) -> dict:
    """Pruned to ``target`` of the measured latency, and by FLOPs (ranked
    per FLOP) to the same predicted latency, found by bisection."""
    from mmcpd.deploy.latency_table import latency_table
    from mmcpd.prune.cost import model_cost
    from mmcpd.prune.physical import prune_units

    table = latency_table(base, x, threads=args.threads, points=args.points,
                          progress=True)
    lat = model_cost(base, result, 'latency', table=table, round_to=8)
    flops = model_cost(base, result, 'flops')
    removed = {'latency': _select(base, result, lat, args.target)}
    goal = lat.total(removed['latency'])
    lo, hi = 0.05, 0.95
    for _ in range(10):
        mid = (lo + hi) / 2
        got = _select(base, result, flops, mid)
        if lat.total(got) > goal:
            lo = mid
        else:
            hi, removed['flops@lat'] = mid, got
    out = {}
    for name, units in removed.items():
        out[name] = copy.deepcopy(base)
        prune_units(out[name], result, units)
        print(f'{name}: predicted {lat.total(units):.2f} of '
              f'{lat.total():.2f} ms', flush=True)
    return out


def bench_model(config: str, size: int, args, folder: str) -> dict:
    import mmcpd
    from mmcpd.apis import build_model_from_cfg
    from mmcpd.deploy import export_onnx, model_complexity
    from mmcpd.deploy.latency import measure_latencies
    from mmcpd.utils.config import load_config

    torch.manual_seed(0)
    base = build_model_from_cfg(load_config(config)).eval()
    x = torch.randn(1, 3, size, size)
    result = mmcpd.comb_model(base, x)
    variants = {'baseline': base}
    if args.metric == 'latency':
        variants.update(latency_variants(base, x, result, args))
    for round_to in (args.round_to if args.metric == 'flops' else []):
        model = copy.deepcopy(base)
        mmcpd.prune_model(model, x, target=args.target, round_to=round_to,
                          min_channels=round_to, result=result)
        variants[f'round{round_to}'] = model
    for beta in args.act_weight:
        model = copy.deepcopy(base)
        mmcpd.prune_model(model, x, target=args.target, round_to=8,
                          min_channels=8, rank_by='latency_proxy',
                          act_weight=beta, result=result)
        variants[f'latency{beta:g}'] = model
    if args.uniform:
        model = copy.deepcopy(base)
        mmcpd.prune_model(model, x, 1 - (1 - args.target)**0.5, round_to=8,
                          result=result)
        variants['uniform8'] = model
    paths, flops = {}, {}
    for name, model in variants.items():
        paths[name] = export_onnx(model, x, osp.join(folder, f'{name}.onnx'),
                                  dynamic_batch=args.batch > 1)
        flops[name] = model_complexity(model, x)['flops']
    timed = measure_latencies(
        list(paths.values()), shape=(args.batch, 3, size, size),
        warmup=args.warmup, runs=args.runs, threads=args.threads,
        progress=False, interleave=not args.sequential, spin=args.spin)
    lat = {n: r.stats.median_ms for n, r in zip(paths, timed)}
    if args.metric == 'latency':
        # what the table predicts, measured the table's way (each node's
        # fastest run, profiled): a check of the prediction that load on a
        # shared machine moves less than whole-run medians
        from mmcpd.deploy.latency_table import _time_files
        node_min = {
            n: _time_files([p], 'cpu', args.threads, 0.0, folder,
                           min_runs=20, skip_ops=())[0]
            for n, p in paths.items()
        }
    row = dict(config=config, size=size, batch=args.batch, flops=flops,
               median_ms=lat, threads=args.threads, runs=args.runs,
               spin=args.spin, interleaved=not args.sequential,
               cpu=timed[0].cpu, onnxruntime=timed[0].onnxruntime_version)
    if args.profile:
        from mmcpd.deploy.profile import (compare_profiles, profile_nodes,
                                          split_time)
        nodes = {
            name: profile_nodes(path, (args.batch, 3, size, size),
                                warmup=5, runs=args.profile,
                                threads=args.threads)
            for name, path in paths.items()
        }
        row['profile_ms'] = {n: split_time(v) for n, v in nodes.items()}
        row['nodes'] = {
            n: compare_profiles(nodes['baseline'], v)
            for n, v in nodes.items() if n != 'baseline'
        }
    for name in paths:
        if name == 'baseline':
            continue
        row[name] = speedup(flops, lat, name, 'baseline')
        if args.metric == 'latency':
            row[name]['node_min_speedup'] = round(
                node_min['baseline'] / node_min[name], 3)
            row[name]['flops_kept'] = round(
                flops[name] / flops['baseline'], 3)
    return row


def speedup(flops: dict, latency: dict, name: str, base: str) -> dict:
    """FLOPs and latency speedups of ``name`` over ``base``, and their
    ratio (1: latency falls as much as FLOPs)."""
    fs = flops[base] / flops[name]
    ls = latency[base] / latency[name]
    return dict(flops_speedup=round(fs, 3), latency_speedup=round(ls, 3),
                ratio=round(ls / fs, 3))


def main():
    args = parse_args()
    warnings.simplefilter('ignore')
    folder = tempfile.mkdtemp()
    models = [m for m in MODELS if not args.models or any(
        k in m[0] for k in args.models)]
    rows = []
    for config, size in models:
        rows.append(bench_model(config, size, args, folder))
        summary = {k: v for k, v in rows[-1].items() if k.startswith('round')}
        print(f"{config}: baseline {rows[-1]['median_ms']['baseline']:.1f} "
              f'ms; {summary}', flush=True)
        if args.profile:
            print('  profiled ms in Conv/Gemm/MatMul | other: ' + ', '.join(
                f"{n} {v['products']:.1f} | {v['other']:.1f}"
                for n, v in rows[-1]['profile_ms'].items()), flush=True)
    with open(args.out, 'w') as f:
        json.dump(rows, f, indent=1)
    names = [f'round{r}' for r in args.round_to] \
        if args.metric == 'flops' else ['latency', 'flops@lat']
    names += [f'latency{beta:g}' for beta in args.act_weight]
    names += ['uniform8'] if args.uniform else []
    print(f'\nlatency speedup / FLOPs speedup (median of {args.runs} runs, '
          f'batch {args.batch}, {args.threads} threads)\n')
    print('latency speedup (FLOPs speedup, latency / FLOPs)\n')
    print('| model | baseline ms | ' + ' | '.join(names) + ' |')
    print('|---|---|' + '---|' * len(names))
    for r in rows:
        cells = [
            f"{r[n]['latency_speedup']:.2f}x ({r[n]['flops_speedup']:.2f}x, "
            f"{r[n]['ratio']:.2f})" + (
                f"; nodes' fastest {r[n]['node_min_speedup']:.2f}x"
                if 'node_min_speedup' in r[n] else '') for n in names
        ]
        print(f"| {r['config'].split('/')[-1]} | "
              f"{r['median_ms']['baseline']:.1f} | " + ' | '.join(cells) +
              ' |')


if __name__ == '__main__':
    main()
