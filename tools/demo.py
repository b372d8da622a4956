"""The offline CPD demo, in one command: train, prune, distil, export, time.

For each task (classification on scikit-learn's handwritten digits with a
small ResNet, segmentation of digit canvases with a small UNet, detection
of the digits on canvases with a small RetinaNet):

1. train the baseline (``configs/demo/<baseline>.py``) from scratch;
2. prune it with CPD to about half its FLOPs, with distillation from the
   baseline (KD on logits / CWD on seg logits / CWD on the detector's
   features, ``configs/_base_/cpd_det.py``), and fine-tune
   (``configs/demo/cpd_*.py``); the CPDHook writes the physically pruned
   model (``pruned_deploy.pth``);
3. evaluate both (top-1 accuracy / mIoU / COCO bbox mAP on the val split;
   the pruned model
   is the physically smaller one, rebuilt from its checkpoint);
4. export both to ONNX (checked against torch) and time them in
   onnxruntime.

The table (baseline vs pruned: metric, params, FLOPs, ONNX latency) is
printed and written to ``<work-dir>/demo_results.json`` and ``.md``.

Examples:
    python tools/demo.py                       # classification, segmentation
    python tools/demo.py --task det            # detection
    python tools/demo.py --task cls --work-dir work_dirs/demo
    python tools/demo.py --quick               # a smoke test (the tests)
    python tools/demo.py --verbose             # mmengine's full console log
    python tools/demo.py --metric latency      # half the measured latency
    python tools/demo.py --metric latency --target 0.4   # 1.67x faster

With ``--metric latency`` the CPDHook ranks units by a latency table of
this machine and closes the loop on the exported student's measured latency
(``closed_loop``), so the final table's measured speedup is the target's.

The console shows one line per stage and a progress bar per training run;
mmengine's full log of each run (config, every logged iteration, the prune
steps and the channel tables) is in ``<work-dir>/<task>/<stage>/<time>/``.
"""
import argparse
import json
import os
import os.path as osp
import sys
import time
from typing import Dict, List, Optional

import mmcpd  # noqa: F401  registers mmcpd's modules
from mmengine.config import Config

from mmcpd.apis.experiment import (config_dir, evaluate, find_cpd_hook,
                                   log_file, prepare_config, shrink_data,
                                   train)
from mmcpd.engine.progress import warnings_to_log
from mmcpd.utils import add_mmengine_safe_globals

TASKS = dict(
    cls=dict(
        name='ResNet-18/4 on digits (classification)',
        baseline='resnet18-w16_1xb64_digits.py',
        cpd='cpd_resnet18-w16_digits.py',
        metric='accuracy/top1',
        metric_name='top-1 (%)',
        shape=(1, 3, 32, 32),
        baseline_iters=200),
    seg=dict(
        name='UNet-S4 on digit canvases (segmentation)',
        baseline='unet-s4-d8_fcn_1xb16_digits-seg.py',
        cpd='cpd_unet_digits-seg.py',
        metric='mIoU',
        metric_name='mIoU (%)',
        shape=(1, 3, 64, 64),
        # the UNet needs ~600 iterations to separate the digits (54 mIoU)
        baseline_iters=600),
    det=dict(
        name='RetinaNet-R18/4 on digit canvases (detection)',
        baseline='retinanet-r18-w16_1xb16_digits-det.py',
        cpd='cpd_retinanet_digits-det.py',
        metric='coco/bbox_mAP',
        metric_name='bbox mAP (%)',
        # CocoMetric reports fractions, the table percent; it reports
        # nothing where no box scores above the threshold (a few iterations)
        scale=100.0,
        empty=0.0,
        shape=(1, 3, 64, 64),
        baseline_iters=1000,
        # the detector needs longer to recover from pruning
        cpd_iters=300,
        # COCO files, generated on first use into <work-dir>/det/data
        coco_data=True))

#: What ``--task all`` (the default) runs; detection is ``--task det``.
ALL = ('cls', 'seg')
# Full demo: iterations of CPD (prune + tune) and timing runs; baseline
# iterations (and the detector's CPD iterations) are per task (TASKS).
# Classification and segmentation take about 6 minutes on 2 CPU cores, the
# detector about 5 more.
FULL = dict(cpd_iters=100, runs=1000, warmup=50)
# --quick: a few iterations on a few samples, to test the chain.
QUICK = dict(
    baseline_iters=4,
    cpd_iters=4,
    runs=20,
    warmup=5,
    batch_size=8,
    samples=(32, 16))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Offline CPD demo: baseline vs pruned, on bundled data')
    parser.add_argument(
        '--work-dir',
        default='work_dirs/demo',
        help='where checkpoints, ONNX files and the table go')
    parser.add_argument(
        '--task',
        choices=['cls', 'seg', 'det', 'all'],
        default='all',
        help="classification, segmentation, detection; 'all': "
        'classification and segmentation')
    parser.add_argument(
        '--quick',
        action='store_true',
        help='a few iterations on a few samples (a smoke test)')
    parser.add_argument(
        '--baseline-iters',
        type=int,
        help="baseline training iterations (default "
        "200 for classification, 600 for segmentation, 1000 for detection)")
    parser.add_argument(
        '--cpd-iters',
        type=int,
        help=f"CPD iterations: prune over the first half, then fine-tune "
        f"(default {FULL['cpd_iters']}, 300 for detection)")
    parser.add_argument(
        '--runs',
        type=int,
        help=f"timed onnxruntime runs per model (default {FULL['runs']})")
    parser.add_argument(
        '--metric',
        choices=['flops', 'latency'],
        default='flops',
        help='what the CPD target counts: FLOPs, or the latency measured '
        'here (a per-layer latency table, measured once and cached)')
    parser.add_argument(
        '--target',
        type=float,
        help='fraction of the metric to remove (default: the configs\', '
        '0.5)')
    parser.add_argument(
        '--verbose',
        action='store_true',
        help="mmengine's full log on the console (it is always written to "
        'the work dirs)')
    args = parser.parse_args(argv)
    if args.target is not None and not 0 < args.target < 1:
        parser.error(f'`--target` should be in (0, 1), but got '
                     f'{args.target}')
    for name in ('baseline_iters', 'cpd_iters', 'runs'):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f'`--{name.replace("_", "-")}` should be >= 1, but '
                         f'got {value}')
    return args


class Progress:
    """Numbered, timed progress lines on stdout."""

    def __init__(self, total: int):
        self.total = total
        self.done = 0
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.start
        print(
            f'[demo {self.done}/{self.total} | {elapsed:6.1f} s] {message}',
            flush=True)


def _prepare(path: str, work_dir: str, iters: int, quick: bool,
             data_root: Optional[str] = None) -> Config:
    cfg = prepare_config(path, work_dir, iters)
    if data_root is not None:
        _move_coco_data(cfg, data_root)
    if quick:
        shrink_data(cfg, QUICK['batch_size'], *QUICK['samples'])
    return cfg


def _move_coco_data(cfg: Config, data_root: str) -> None:
    """Point the datasets of a config on generated COCO files
    (``DigitsDetDataset``) and its COCO metrics to ``data_root``."""
    for split in ('train', 'val', 'test'):
        loader = cfg.get(f'{split}_dataloader', None)
        if loader is not None:
            loader.dataset.data_root = data_root
        evaluator = cfg.get(f'{split}_evaluator', None)
        if evaluator is not None and 'ann_file' in evaluator:
            evaluator.ann_file = osp.join(data_root, 'val',
                                          'annotations.json')


def _set_target(cfg: Config, args) -> Dict:
    """Apply ``--metric`` / ``--target`` to the CPD settings; what the
    target is."""
    cpd = find_cpd_hook(cfg)
    if args.target is not None:
        cpd['target'] = args.target
    if args.metric == 'latency':
        # measured latency ranks the units too; the table's threads are
        # the timing's (this machine's cores)
        cpd.update(metric='latency', rank_by=None)
    return dict(metric=cpd['metric'], fraction=cpd['target'],
                speedup=1.0 / (1.0 - cpd['target']))


def run_task(key: str, args, settings: dict, progress: Progress) -> Dict:
    """Baseline, CPD, evaluation and latency of one task."""
    from mmcpd.apis.benchmark import ModelSource, benchmark_models

    task = TASKS[key]
    root = osp.join(args.work_dir, key)
    base_path = osp.join(config_dir(), 'demo', task['baseline'])
    cpd_path = osp.join(config_dir(), 'demo', task['cpd'])

    data_root = osp.join(root, 'data') if task.get('coco_data') else None
    base_iters = settings.get('baseline_iters', task['baseline_iters'])
    progress(f"{task['name']}: training the baseline ({base_iters} iters)")
    base_cfg = _prepare(base_path, osp.join(root, 'baseline'), base_iters,
                        args.quick, data_root)
    base_ckpt = train(base_cfg, args.verbose, f'{key} baseline')

    cpd_iters = settings.get('cpd_iters') or task.get(
        'cpd_iters', FULL['cpd_iters'])
    progress(f"{task['name']}: pruning with CPD + distillation from the "
             f"baseline ({cpd_iters} iters)")
    cpd_cfg = _prepare(cpd_path, osp.join(root, 'cpd'), cpd_iters,
                       args.quick, data_root)
    cpd_cfg.load_from = base_ckpt
    target = _set_target(cpd_cfg, args)
    train(cpd_cfg, args.verbose, f'{key} CPD')
    hook = find_cpd_hook(cpd_cfg)
    pruned_ckpt = osp.join(cpd_cfg.work_dir,
                           hook.get('deploy_file', 'pruned_deploy.pth'))
    if not osp.isfile(pruned_ckpt):
        raise FileNotFoundError(
            f'the CPDHook wrote no pruned model to {pruned_ckpt}')
    plot = osp.join(cpd_cfg.work_dir, hook.get('plot_file') or '')

    progress(f"{task['name']}: evaluating baseline and pruned model")
    metrics = dict(
        baseline=evaluate(base_cfg, base_ckpt, osp.join(root, 'eval'),
                          args.verbose),
        pruned=evaluate(base_cfg, pruned_ckpt, osp.join(root, 'eval'),
                        args.verbose))

    progress(f"{task['name']}: exporting to ONNX and timing "
             f"({settings['runs']} runs each, interleaved)")
    sources = [
        ModelSource('baseline', config=base_path, checkpoint=base_ckpt),
        ModelSource('pruned', config=base_path, checkpoint=pruned_ckpt)
    ]
    bench = benchmark_models(
        sources,
        task['shape'],
        osp.join(root, 'onnx'),
        warmup=settings['warmup'],
        runs=settings['runs'],
        progress=not args.quick,
        interleave=True)
    files = dict(
        pruned_checkpoint=pruned_ckpt,
        deploy_config=osp.splitext(pruned_ckpt)[0] + '.py',
        onnx=[bench['models'][n]['onnx'] for n in ('baseline', 'pruned')],
        plot=plot if osp.isfile(plot) else None,
        logs=[log_file(base_cfg.work_dir),
              log_file(cpd_cfg.work_dir)])
    rows = {}
    for name in ('baseline', 'pruned'):
        entry = bench['models'][name]
        rows[name] = dict(
            metric=_metric(metrics[name], task),
            params=int(entry['params']),
            flops=int(entry['flops']),
            latency_ms=entry['latency']['mean_ms'],
            latency_median_ms=entry['latency']['median_ms'],
            checkpoint=base_ckpt if name == 'baseline' else pruned_ckpt,
            onnx=entry['onnx'])
    return dict(
        task=task['name'],
        metric=task['metric_name'],
        input_shape=list(task['shape']),
        baseline=rows['baseline'],
        pruned=rows['pruned'],
        target=target,
        speedup=bench['speedup'],
        hook_speedup=_hook_speedup(pruned_ckpt),
        system=bench['system'],
        files=files)


def _metric(metrics: Dict[str, float], task: dict) -> float:
    """The task's metric from an evaluation, in the table's unit."""
    if not metrics and 'empty' in task:
        return task['empty']
    if task['metric'] not in metrics:
        raise KeyError(f"the evaluation reported no `{task['metric']}`, "
                       f'but {sorted(metrics)}')
    return metrics[task['metric']] * task.get('scale', 1.0)


def _hook_speedup(path: str) -> Optional[float]:
    """The speedup the CPDHook's closed loop measured at its last prune
    step (``metric='latency'``), from the deploy checkpoint's meta."""
    import torch
    meta = torch.load(path, map_location='cpu', weights_only=True).get(
        'meta', {})
    ratio = meta.get('latency_ratio')
    return 1.0 / ratio if ratio else None


def markdown(results: Dict[str, Dict], wall_s: float) -> str:
    """The results as a markdown table."""
    lines = [
        '| task | model | metric | params | FLOPs | ONNX latency (ms) |',
        '| --- | --- | --- | --- | --- | --- |'
    ]
    for res in results.values():
        for name in ('baseline', 'pruned'):
            row = res[name]
            lines.append(
                f"| {res['task']} | {name} | {res['metric']} "
                f"{row['metric']:.2f} | {row['params'] / 1e6:.3f} M | "
                f"{row['flops'] / 1e6:.2f} M | {row['latency_ms']:.3f} |")
    lines += [
        '', '| task | target | measured speedup: latency | FLOPs |',
        '| --- | --- | --- | --- |'
    ]
    for res in results.values():
        tg, sp = res['target'], res['speedup']
        measured = f"{sp['latency']:.2f}x"
        if tg['metric'] == 'latency':  # what the target counts: medians
            hook = res.get('hook_speedup')
            measured += f" (median {sp['latency_median']:.2f}x" + (
                f"; CPDHook's closed loop {hook:.2f}x" if hook else '') + ')'
        lines.append(
            f"| {res['task']} | {tg['metric']} {tg['speedup']:.2f}x lower "
            f"(remove {tg['fraction']:g}) | {measured} | "
            f"{sp['flops']:.2f}x |")
    lines.append('')
    for res in results.values():
        sp = res['speedup']
        lines.append(
            f"- {res['task']}: FLOPs {sp['flops']:.2f}x fewer, params "
            f"{sp['params']:.2f}x fewer, latency {sp['latency']:.2f}x lower "
            f"(onnxruntime, input {res['input_shape']}, "
            f"{res['system']['threads']} threads)")
    lines.append(f'- wall time of the demo: {wall_s:.0f} s')
    return '\n'.join(lines) + '\n'


def main(argv=None) -> Dict[str, Dict]:
    args = parse_args(argv)
    add_mmengine_safe_globals()
    # without --verbose, Python warnings go to the runs' log files
    with warnings_to_log(not args.verbose):
        return _main(args)


def _main(args) -> Dict[str, Dict]:
    """The tasks, the table and the paths of what was written."""
    settings = dict(QUICK if args.quick else FULL)
    # the full demo's CPD iterations are per task unless given
    settings['cpd_iters'] = settings['cpd_iters'] if args.quick else None
    for name in ('baseline_iters', 'cpd_iters', 'runs'):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    keys: List[str] = list(ALL) if args.task == 'all' else [args.task]
    os.makedirs(args.work_dir, exist_ok=True)
    start = time.perf_counter()
    progress = Progress(4 * len(keys))
    results = {}
    for key in keys:
        results[key] = run_task(key, args, settings, progress)
    wall = time.perf_counter() - start
    table = markdown(results, wall)
    out: Dict[str, Optional[object]] = dict(
        results=results, settings=settings, wall_s=wall)
    json_path = osp.join(args.work_dir, 'demo_results.json')
    with open(json_path, 'w') as f:
        json.dump(out, f, indent=2)
    md_path = osp.join(args.work_dir, 'demo_results.md')
    with open(md_path, 'w') as f:
        f.write(table)
    print('\n' + table, flush=True)
    for res in results.values():
        files = res['files']
        print(f"{res['task']}:\n"
              f"  pruned checkpoint: {files['pruned_checkpoint']}\n"
              f"  its deploy config: {files['deploy_config']}\n"
              f"  ONNX (baseline, pruned): {', '.join(files['onnx'])}\n"
              f"  pruning plot: {files['plot']}\n"
              f"  full logs: {', '.join(filter(None, files['logs']))}")
    print(f'results: {json_path}, {md_path}', flush=True)
    return results


if __name__ == '__main__':
    sys.exit(0 if main() else 1)
