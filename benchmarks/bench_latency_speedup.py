"""Does ONNX latency follow FLOPs? Pruned vs unpruned, with and without
channel rounding.

    python benchmarks/bench_latency_speedup.py [--runs 200] [--threads 2]
        [--ratio 0.3] [--out latency_speedup.json]

For each model (ResNet-50, MobileNetV2, DeiT-S at 224, SegFormer-B0 at 256,
random weights), units are removed by weight magnitude (``mmcpd.prune``) at
``--ratio`` (0.3 of every group's units removes about half the FLOPs), once
with free widths and once with kept widths rounded to multiples of 8. All
three ONNX files are timed interleaved in onnxruntime (graph optimisations
on, fixed threads) and the report gives latency speedup / FLOPs speedup.
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--ratio', type=float, default=0.3)
    parser.add_argument('--runs', type=int, default=200)
    parser.add_argument('--warmup', type=int, default=50)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--out', default='latency_speedup.json')
    parser.add_argument('--models', nargs='*', default=None)
    args = parser.parse_args()

    import mmcpd
    from mmcpd.apis import build_model_from_cfg
    from mmcpd.deploy import export_onnx, model_complexity
    from mmcpd.deploy.latency import measure_latencies
    from mmcpd.utils.config import load_config
    warnings.simplefilter('ignore')
    folder = tempfile.mkdtemp()
    rows = []
    models = [m for m in MODELS if not args.models or any(
        k in m[0] for k in args.models)]
    for config, size in models:
        base = build_model_from_cfg(load_config(config))
        x = torch.randn(1, 3, size, size)
        result = mmcpd.comb(base, x)
        variants = {'baseline': base}
        for name, round_to in (('pruned', 1), ('pruned_round8', 8)):
            model = copy.deepcopy(base)
            mmcpd.prune(model, x, args.ratio, round_to=round_to,
                        result=result)
            variants[name] = model
        paths, flops = {}, {}
        for name, model in variants.items():
            paths[name] = export_onnx(model, x,
                                      osp.join(folder, f'{name}.onnx'))
            flops[name] = model_complexity(model, x)['flops']
        timed = measure_latencies(
            list(paths.values()), warmup=args.warmup, runs=args.runs,
            threads=args.threads, progress=False, interleave=True)
        lat = {n: r.stats.median_ms for n, r in zip(paths, timed)}
        row = dict(config=config, size=size, flops=flops, median_ms=lat,
                   threads=args.threads, runs=args.runs,
                   cpu=timed[0].cpu,
                   onnxruntime=timed[0].onnxruntime_version)
        for name in ('pruned', 'pruned_round8'):
            fs = flops['baseline'] / flops[name]
            ls = lat['baseline'] / lat[name]
            row[name] = dict(flops_speedup=round(fs, 3),
                             latency_speedup=round(ls, 3),
                             ratio=round(ls / fs, 3))
        rows.append(row)
        print(f"{config}: baseline {lat['baseline']:.1f} ms; pruned "
              f"{row['pruned']}; rounded to 8 {row['pruned_round8']}",
              flush=True)
    with open(args.out, 'w') as f:
        json.dump(rows, f, indent=1)
    print('| model | FLOPs speedup | latency speedup | ratio | '
          'FLOPs speedup (round 8) | latency speedup (round 8) | ratio |')
    print('|---|---|---|---|---|---|---|')
    for r in rows:
        a, b = r['pruned'], r['pruned_round8']
        print(f"| {r['config']} | {a['flops_speedup']} | "
              f"{a['latency_speedup']} | {a['ratio']} | "
              f"{b['flops_speedup']} | {b['latency_speedup']} | "
              f"{b['ratio']} |")


if __name__ == '__main__':
    main()
