"""Measured latency of the transfer benchmark's models (``transfer.py``).

Per task: the baseline and every cached run's final model (mmcpd's deploy
checkpoint, the anchors' pickled model, the control's last checkpoint) are
exported to ONNX (opset 17, batch 1, the task's input) and timed by
onnxruntime's CPU provider, one intra-op thread, no spinning, all files of
the task interleaved run by run (A B C ... A B C ...) so that load from
other processes hits all of them alike. The 1-minute load average before
and after is kept with the times: on a shared machine the numbers are
noisy; the ratios to the baseline measured in the same interleaved pass
are what the report uses. Results: ``<work-dir>/latency/<task>.json``.

    /work/benchenv/bin/python benchmarks/quality/transfer_latency.py \
        --tasks digits textures
"""
import argparse
import glob
import json
import os
import os.path as osp
import sys

HERE = osp.dirname(osp.abspath(__file__))
ROOT = osp.dirname(osp.dirname(HERE))
for _path in (ROOT, HERE):
    if _path not in sys.path:
        sys.path.insert(0, _path)


def _model(run: dict, base_cfg):
    import torch
    from mmcpd.apis import init_model
    if run['kind'] == 'anchor':
        model = torch.load(run['model_file'], weights_only=False)
    else:
        model = init_model(base_cfg, run['model_file'])
    return model.eval()


def measure_task(task: str, work_dir: str, runs: int, warmup: int) -> dict:
    import torch
    torch.set_num_threads(1)
    import anchors  # noqa: F401
    import synth  # noqa: F401
    from mmcpd.apis import init_model
    from mmcpd.deploy import export_onnx
    from mmcpd.deploy.latency import measure_latencies
    from transfer import TASKS, _cfg, run_name
    t = TASKS[task]
    with open(osp.join(work_dir, f'{task}_baseline', 'result.json')) as f:
        base = json.load(f)
    onnx_dir = osp.join(work_dir, 'latency', task)
    os.makedirs(onnx_dir, exist_ok=True)
    base_cfg = _cfg(t['config'], onnx_dir, 1)
    items = [('baseline', init_model(base_cfg, base['checkpoint']).eval())]
    pattern = osp.join(work_dir, 'runs', f'{task}_*.json')
    for path in sorted(glob.glob(pattern)):
        with open(path) as f:
            run = json.load(f)
        if run['task'] != task:  # digits_ vs digits_seg_
            continue
        items.append((run_name(run), _model(run, base_cfg)))
    x = torch.randn(t['shape'])
    paths = []
    for name, model in items:
        path = osp.join(onnx_dir, name + '.onnx')
        export_onnx(model, x, path)
        paths.append(path)
    load_before = os.getloadavg()[0]
    results = measure_latencies(paths, warmup=warmup, runs=runs, threads=1,
                                progress=False, interleave=True)
    load_after = os.getloadavg()[0]
    out = dict(
        task=task, threads=1, runs=runs, warmup=warmup, interleaved=True,
        load_before=load_before, load_after=load_after,
        cores=os.cpu_count(), cpu=results[0].cpu,
        onnxruntime=results[0].onnxruntime_version,
        models={
            name: dict(median_ms=r.stats.median_ms, mean_ms=r.stats.mean_ms,
                       min_ms=r.stats.min_ms)
            for (name, _), r in zip(items, results)
        })
    b = out['models']['baseline']['median_ms']
    for v in out['models'].values():
        v['speedup'] = b / v['median_ms']
    with open(osp.join(work_dir, 'latency', f'{task}.json'), 'w') as f:
        json.dump(out, f, indent=1)
    return out


def main(argv=None) -> int:
    from transfer import TASKS
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--work-dir', default='work_dirs/quality_transfer')
    p.add_argument('--tasks', nargs='+', choices=list(TASKS),
                   default=list(TASKS))
    p.add_argument('--runs', type=int, default=2000)
    p.add_argument('--warmup', type=int, default=100)
    args = p.parse_args(argv)
    for task in args.tasks:
        if not osp.isfile(osp.join(args.work_dir, f'{task}_baseline',
                                   'result.json')):
            print(f'{task}: no baseline yet', flush=True)
            continue
        out = measure_task(task, args.work_dir, args.runs, args.warmup)
        print(f"{task}: {len(out['models'])} models, load "
              f"{out['load_before']:.1f} -> {out['load_after']:.1f}",
              flush=True)
        for name, v in out['models'].items():
            print(f"  {name}: {v['median_ms']:.3f} ms ({v['speedup']:.2f}x)",
                  flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
