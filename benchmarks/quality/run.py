"""Quality benchmark: which distillation and importance help CPD, by evidence.

Two tasks on bundled data made hard enough that methods separate
(``configs/``: the demo ResNet-18/4 on 16x16 noisy, occluded digits with 60
training images per class; the demo UNet on 32x32 noisy, occluded digit
canvases), and the demo RetinaNet on 64x64 digit canvases (``det``, asked
for by the ``detection`` group only: ``--groups detection``), each baseline
trained once from scratch. Every arm prunes the
baseline with the real :class:`~mmcpd.engine.hooks.CPDHook` through a real
mmengine runner (:class:`~mmcpd.engine.config_transform.CPDRunner`) to 2x,
4x or 8x fewer FLOPs, pruning over the first half of the iterations and
fine-tuning over the second; the control fine-tunes the baseline for the
same iterations without pruning. Each run's result is cached as JSON under
``<work-dir>/runs/``, so an interrupted benchmark resumes where it
stopped; the table (``quality.md``), the summary (``quality.json``) and the
plot (``quality.png``) are written from whatever runs exist.

The arms (``arms.py``): the method comparison none / KD / CWD / DIST at 2x,
4x and 8x; at 4x on the classifier, KD's temperature and weight, a wider
teacher, the loaded teacher fine-tuned alongside the student,
distillation during pruning only or ramped down, and features (with a
connector for the wider teacher); the importance scores taylor /
magnitude / random against hessian at 4x and 8x; for detection (bbox mAP,
``detection.md``), none / CWD on the class score map / CWD on the FPN
levels / CWD on the logits (every level's score map) at 2x and 4x.

Examples:
    python benchmarks/quality/run.py                  # the full benchmark
    python benchmarks/quality/run.py --quick          # a smoke run
    python benchmarks/quality/run.py --report-only    # table and plot only
    python benchmarks/quality/run.py --groups detection --jobs 1
"""
import argparse
import json
import os
import os.path as osp
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context

HERE = osp.dirname(osp.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from arms import (DEFAULT_GROUPS, GROUPS, SEEDS, SPEEDUPS,  # noqa: E402
                  TASKS, WIDE, plan, run_name)
from report import write_report  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Distillation and importance quality benchmark of CPD')
    parser.add_argument('--work-dir', default='work_dirs/quality')
    parser.add_argument('--tasks', nargs='+', choices=list(TASKS),
                        default=list(TASKS))
    parser.add_argument('--groups', nargs='+',
                        choices=list(GROUPS) + ['all'],
                        default=list(DEFAULT_GROUPS),
                        help='questions to answer (default: %(default)s, '
                        'which distillation, 30 minutes on 2 idle '
                        'cores; the other groups, or `all`, add the '
                        'importance scores and the settings sweeps)')
    parser.add_argument('--arms', nargs='+', default=None,
                        help='only these arms of the groups (and the '
                        'control)')
    parser.add_argument('--speedups', nargs='+', type=int, default=None,
                        choices=list(SPEEDUPS),
                        help='only these FLOPs reductions')
    parser.add_argument('--seeds', nargs='+', type=int, default=list(SEEDS))
    parser.add_argument('--jobs', type=int, default=2,
                        help='runs in parallel, one CPU thread each')
    parser.add_argument('--quick', action='store_true',
                        help='a smoke run: 8 iterations, few samples, '
                        'seed 0, 2x and 4x only')
    parser.add_argument('--report-only', action='store_true',
                        help='write the table and plot from cached runs')
    parser.add_argument('--out', default=None,
                        help='also copy quality.md/.json/.png here')
    args = parser.parse_args(argv)
    if 'all' in args.groups:
        args.groups = list(GROUPS)
    if args.jobs < 1:
        parser.error(f'`--jobs` should be >= 1, but got {args.jobs}')
    known = {arm for arms, _, _ in GROUPS.values() for arm in arms}
    unknown = sorted(set(args.arms or ()) - known)
    if unknown:
        parser.error(f'`--arms` should be among {sorted(known)}, but got '
                     f'{unknown}')
    if args.quick:
        args.seeds = args.seeds[:1]
        if args.work_dir == 'work_dirs/quality':
            args.work_dir = 'work_dirs/quality_quick'
    return args


def _task_cfg(task: str, name: str, work_dir: str, iters: int, quick: bool):
    from mmcpd.apis.experiment import prepare_config, shrink_data
    cfg = prepare_config(
        osp.join(HERE, 'configs', name), work_dir, iters, log_level='INFO')
    if quick:
        shrink_data(cfg, 8, 32, 16)
    return cfg


def _iters(task: str, key: str, quick: bool) -> int:
    return 8 if quick else TASKS[task][key]


def train_baseline(task: str, wide: bool, work_dir: str,
                   quick: bool) -> dict:
    """Train a task's baseline (or its wide teacher) once; cached."""
    import torch
    torch.set_num_threads(1)
    import mmcpd  # noqa: F401
    from mmcpd.apis.experiment import evaluate
    from mmcpd.engine.progress import warnings_to_log
    from mmcpd.utils import add_mmengine_safe_globals
    add_mmengine_safe_globals()
    name = TASKS[task]['wide_config' if wide else 'config']
    tag = 'wide' if wide else 'baseline'
    out = osp.join(work_dir, f'{task}_{tag}')
    cache = osp.join(out, 'result.json')
    if osp.isfile(cache):
        with open(cache) as f:
            return json.load(f)
    iters = _iters(task, 'baseline_iters', quick)
    with warnings_to_log(True):
        cfg = _task_cfg(task, name, out, iters, quick)
        start = time.perf_counter()
        checkpoint = _train(cfg)
        metrics = evaluate(cfg, checkpoint, osp.join(out, 'eval'), False)
        result = dict(
            checkpoint=checkpoint,
            metric=_metric(task, metrics),
            metrics=metrics,
            flops=_flops(cfg, checkpoint, task),
            wall_s=time.perf_counter() - start)
    _dump(result, cache)
    return result


def _metric(task: str, metrics: dict) -> float:
    """The task's metric of an evaluation, in the tables' unit (bbox mAP
    in points: CocoMetric reports 0-1)."""
    spec = TASKS[task]
    return metrics[spec['metric']] * spec.get('metric_scale', 1.0)


def _train(cfg) -> str:
    """Train by CPDRunner (``distill`` and ``cpd`` applied), warnings and
    info to the run's log file only; the last checkpoint."""
    from mmcpd.engine.progress import QuietCPDRunner
    QuietCPDRunner.from_cfg(cfg).train()
    return osp.join(cfg.work_dir, f'iter_{cfg.train_cfg.max_iters}.pth')


def _flops(cfg, checkpoint: str, task: str) -> int:
    import torch
    from mmcpd.apis import init_model
    from mmcpd.deploy import model_complexity
    model = init_model(cfg, checkpoint)
    return int(model_complexity(model, torch.zeros(TASKS[task]['shape']))
               ['flops'])


def _dump(obj, path: str) -> None:
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)  # a killed run leaves no half-written result


def run_one(run: dict, baseline: dict, wide: dict, work_dir: str,
            quick: bool) -> dict:
    """One arm at one target and seed: train with CPDRunner, evaluate the
    pruned (deploy) checkpoint; the result is cached as JSON."""
    import torch
    torch.set_num_threads(1)
    import mmcpd  # noqa: F401
    from arms import arm_settings
    from mmcpd.apis.experiment import evaluate, find_cpd_hook, read_scalars
    from mmcpd.engine.progress import warnings_to_log
    from mmcpd.utils import add_mmengine_safe_globals
    add_mmengine_safe_globals()
    task = TASKS[run['task']]
    name = run_name(run)
    out = osp.join(work_dir, 'runs', name)
    iters = _iters(run['task'], 'cpd_iters', quick)
    with warnings_to_log(True):
        cfg = _task_cfg(run['task'], 'cpd_' + task['config'], out, iters,
                        quick)
        cfg.load_from = baseline['checkpoint']
        cfg.randomness = dict(seed=run['seed'])
        settings = arm_settings(run['task'], run['arm'], iters)
        hook = find_cpd_hook(cfg)
        if run['speedup'] is None:  # the control: fine-tuning only
            cfg.cpd = None
            losses = None
        else:
            hook['target'] = SPEEDUPS[run['speedup']]
            hook['importance'] = settings['importance']
            losses = settings['losses']
        if losses is None:
            cfg.distill = None
        else:
            cfg.distill = dict(distill_losses=losses, keep_task_loss=True,
                               train_teacher=settings['train_teacher'],
                               probe_shape=task['shape'][1:])
            if settings['wide_teacher']:
                wide_cfg = _task_cfg(run['task'], task['wide_config'], out,
                                     1, quick)
                teacher = dict(wide_cfg.model)
                teacher['type'] = 'mmpretrain.' + teacher['type']
                cfg.distill.update(teacher=teacher,
                                   teacher_checkpoint=wide['checkpoint'])
        start = time.perf_counter()
        last = _train(cfg)
        wall = time.perf_counter() - start
        checkpoint = last if run['speedup'] is None else osp.join(
            out, hook.get('deploy_file', 'pruned_deploy.pth'))
        base_cfg = _task_cfg(run['task'], task['config'], out, 1, quick)
        metrics = evaluate(base_cfg, checkpoint, osp.join(out, 'eval'),
                           False)
        metric = _metric(run['task'], metrics)
        flops = _flops(base_cfg, checkpoint, run['task'])
    losses_log = [
        {k: v for k, v in row.items() if k.startswith('loss')}
        for row in read_scalars(out) if 'loss' in row
    ]
    result = dict(
        run, metric=metric, metrics=metrics, flops=flops, wall_s=wall,
        losses=losses_log,
        deploy=None if run['speedup'] is None else checkpoint,
        settings=dict(distill=cfg.get('distill', None) and dict(
            cfg.distill), importance=settings['importance']))
    _dump(json.loads(json.dumps(result, default=str)),
          osp.join(work_dir, 'runs', name + '.json'))
    # the training checkpoints are large and not needed again; the small
    # deploy checkpoint stays
    for file in os.listdir(out):
        if file.startswith('iter_') and file.endswith('.pth'):
            os.remove(osp.join(out, file))
    return result


def _pool(jobs: int) -> ProcessPoolExecutor:
    # a fresh process per run: mmengine's global instances start clean
    return ProcessPoolExecutor(
        jobs, mp_context=get_context('spawn'), max_tasks_per_child=1)


def _is_wide(run: dict) -> bool:
    return run['arm'].endswith('_' + WIDE)


def _schedule(args, todo: list) -> None:
    """Train each task's baseline, then its runs in plan order, ``jobs`` at
    a time; the wide teacher is trained where the first run that needs it
    stands in the plan, and those runs follow when it is done."""
    start = time.perf_counter()
    pending, bases, done = {}, {}, 0
    with _pool(args.jobs) as pool:

        def submit_runs(task: str) -> None:
            wide_submitted = False
            for run in todo:
                if run['task'] != task:
                    continue
                if not _is_wide(run):
                    pending[pool.submit(run_one, run, bases[(task, False)],
                                        None, args.work_dir,
                                        args.quick)] = ('run', run)
                elif not wide_submitted:
                    wide_submitted = True
                    pending[pool.submit(train_baseline, task, True,
                                        args.work_dir,
                                        args.quick)] = ('base', task, True)

        for task in args.tasks:
            pending[pool.submit(train_baseline, task, False, args.work_dir,
                                args.quick)] = ('base', task, False)
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                kind = pending.pop(future)
                if kind[0] == 'base':
                    _, task, wide = kind
                    bases[(task, wide)] = future.result()
                    print(f"{task} {'wide teacher' if wide else 'baseline'}"
                          f": {bases[(task, wide)]['metric']:.2f}",
                          flush=True)
                    if not wide:
                        submit_runs(task)
                        continue
                    for run in todo:
                        if run['task'] == task and _is_wide(run):
                            pending[pool.submit(
                                run_one, run, bases[(task, False)],
                                bases[(task, True)], args.work_dir,
                                args.quick)] = ('run', run)
                    continue
                done += 1
                run = kind[1]
                try:
                    result = future.result()
                except Exception as err:  # report, keep the others going
                    print(f'[{done}/{len(todo)}] {run_name(run)} FAILED: '
                          f'{type(err).__name__}: {err}', flush=True)
                    continue
                print(f"[{done}/{len(todo)}] {run_name(run)}: "
                      f"{result['metric']:.2f} ({result['wall_s']:.0f} s, "
                      f'{time.perf_counter() - start:.0f} s so far)',
                      flush=True)
                if done % 8 == 0:
                    write_report(args.work_dir, None)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.makedirs(osp.join(args.work_dir, 'runs'), exist_ok=True)
    if args.report_only:
        write_report(args.work_dir, args.out)
        return 0
    # only the tasks that the chosen groups ask for: their baselines
    args.tasks = [
        t for t in args.tasks if any(t in GROUPS[g][2] for g in args.groups)
    ]
    runs = plan(args.groups, args.tasks, args.seeds)
    if args.quick and args.speedups is None:
        args.speedups = [2, 4]
    runs = [
        r for r in runs
        if (args.arms is None or r['arm'] in args.arms or r['speedup'] is None)
        and (args.speedups is None or r['speedup'] in (None, *args.speedups))
    ]
    todo = [
        r for r in runs if not osp.isfile(
            osp.join(args.work_dir, 'runs', run_name(r) + '.json'))
    ]
    print(f'{len(runs)} runs, {len(runs) - len(todo)} cached, '
          f'{len(todo)} to do ({args.jobs} at a time) in {args.work_dir}',
          flush=True)
    _schedule(args, todo)
    write_report(args.work_dir, args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
