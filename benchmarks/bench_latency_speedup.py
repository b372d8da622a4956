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
``mmcpd.deploy.latency_table``) and the closed loop of ``prune_model(...,
metric='latency', target=0.5)`` removes half of the *measured* latency
(widths x8): select by the table, export, time interleaved with the
unpruned model, re-target (``--tol``, ``--rounds``, ``--loop-runs``). For
comparison, ``flops@lat`` is FLOPs-targeted pruning (ranked per FLOP) put
through the same closed loop, so both land at the same measured latency and
the FLOPs they keep can be compared. The report gives, per model, the target
and measured speedups (median of ``--runs`` interleaved runs), the FLOPs
each keeps, and the time the table and the loops took.

    python benchmarks/bench_latency_speedup.py --metric latency --runs 200 \
        --threads 2 --out docs/latency_target.json
"""
import argparse
import copy
import json
import os.path as osp
import tempfile
import warnings

import numpy as np
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
    parser.add_argument('--tol', type=float, default=0.03,
                        help='closed loop: relative speedup error to stop')
    parser.add_argument('--rounds', type=int, default=5,
                        help='closed loop: measurements at most')
    parser.add_argument('--loop-runs', type=int, default=50,
                        help='closed loop: interleaved runs per measurement')
    parser.add_argument('--calibrate', type=float, nargs='*', default=[],
                        help='closed loop: first fit the latency table to '
                        'the model measured with these fractions of every '
                        "group removed (LatencyCost.calibrate)")
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


def closed_loop(base, x, result, metric, table, meter, args):
    """``base`` pruned by magnitude per ``metric`` (as ``prune_model``
    ranks: widths x8, at most 90% of a group) until the measured latency is
    ``1 - target`` of the unpruned one's (the closed loop of
    ``prune_model(metric='latency')``)."""
    from mmcpd.prune.closed_loop import LatencyLoop
    from mmcpd.prune.pruner import Pruner
    from mmcpd.prune.selection import Guards
    from mmcpd.prune.widths import with_quanta
    from mmcpd.registry import IMPORTANCES

    model = copy.deepcopy(base)
    guards = with_quanta(Guards(8, 0.9, 8), model, result.prunable)
    pruner = Pruner(model, result, IMPORTANCES.build(dict(type='magnitude')),
                    metric, guards, latency_table=table)
    reachable = pruner.reachable(min(args.target, 0.9))
    new, log = pruner.measured_step(
        model, args.target, meter,
        LatencyLoop(tol=args.tol, rounds=args.rounds,
                    calibrate=args.calibrate),
        reachable=reachable)
    pruner.apply(model, new)
    print(f"{metric}: measured {log['ratio']:.3f} after "
          f"{len(log['rounds'])} rounds in {log['seconds']:.0f} s: " +
          ', '.join(f"{r['predicted']:.3f}->{r['measured']:.3f}"
                    for r in log['rounds']), flush=True)
    return model, log


def latency_variants(base, x, result, args) -> tuple:
    """Pruned to ``target`` of the measured latency, ranked per measured
    (tabled) latency and per FLOP, both through the closed loop; with
    their logs and the seconds the table took."""
    import time

    from mmcpd.deploy.latency_table import latency_table
    from mmcpd.deploy.meter import LatencyMeter

    start = time.perf_counter()
    table = latency_table(base, x, threads=args.threads, points=args.points,
                          progress=True)
    table_s = time.perf_counter() - start
    meter = LatencyMeter(base, x, threads=args.threads, runs=args.loop_runs)
    out, logs = {}, {}
    for name, metric in (('latency', 'latency'), ('flops@lat', 'flops')):
        out[name], logs[name] = closed_loop(base, x, result, metric, table,
                                            meter, args)
    meter.close()
    return out, logs, table_s


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
        pruned, logs, table_s = latency_variants(base, x, result, args)
        variants.update(pruned)
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
    # speedup as the closed loop measures it: median of the interleaved
    # run pairs' ratios (steadier than the ratio of medians under load)
    base_times = np.asarray(timed[0].times_ms)
    paired = {
        n: float(np.median(base_times / np.asarray(r.times_ms)))
        for n, r in zip(paths, timed)
    }
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
            row[name]['loop'] = logs[name]
            row[name]['paired_speedup'] = round(paired[name], 3)
    if args.metric == 'latency':
        row.update(target_speedup=round(1 / (1 - args.target), 3),
                   table_s=round(table_s, 1))
    return row


def speedup(flops: dict, latency: dict, name: str, base: str) -> dict:
    """FLOPs and latency speedups of ``name`` over ``base``, and their
    ratio (1: latency falls as much as FLOPs)."""
    fs = flops[base] / flops[name]
    ls = latency[base] / latency[name]
    return dict(flops_speedup=round(fs, 3), latency_speedup=round(ls, 3),
                ratio=round(ls / fs, 3))


def print_target_table(rows, args) -> None:
    """Target vs measured speedup, FLOPs kept at that latency, costs."""
    print(f'\nlatency target: measured speedup (median of {args.runs} '
          f'interleaved runs, {args.threads} threads) and FLOPs kept, '
          'ranked per latency and per FLOP, both closed-loop\n')
    print('| model | target | latency: speedup (paired), FLOPs kept | '
          'flops@lat: speedup (paired), FLOPs kept | table s | loops s '
          '(rounds) |')
    print('|---|---|---|---|---|---|')
    for r in rows:
        lat, fl = r['latency'], r['flops@lat']
        print(f"| {r['config'].split('/')[-1]} | {r['target_speedup']:.2f}x "
              f"| {lat['latency_speedup']:.2f}x ({lat['paired_speedup']:.2f}"
              f"x), {lat['flops_kept']:.3f} | {fl['latency_speedup']:.2f}x "
              f"({fl['paired_speedup']:.2f}x), {fl['flops_kept']:.3f} | "
              f"{r['table_s']:.0f} | {lat['loop']['seconds']:.0f} "
              f"({len(lat['loop']['rounds'])}) / {fl['loop']['seconds']:.0f} "
              f"({len(fl['loop']['rounds'])}) |")


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
    if args.metric == 'latency':
        print_target_table(rows, args)
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
