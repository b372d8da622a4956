"""What physical shrinking saves: one CPD run in mask mode and shrink mode.

    python benchmarks/bench_cpd_run.py [--tasks resnet50 deit-s demo-cls
        demo-seg] [--iters 150] [--baseline-iters 300] [--target 0.75]
        [--seeds 0] [--work-dir work_dirs/bench_cpd_run] [--out FILE.json]

For each task a baseline is trained once (random init, the bundled digit
data), then the same CPD run is made twice from it, by mmcpd's
:class:`~mmcpd.engine.config_transform.CPDRunner` on the CPD base config with
logit KD (``configs/_base_/cpd_kd.py``): remove ``--target`` of the FLOPs
(0.75: 4x fewer) in 10 prune steps over the first third of the iterations,
then fine-tune. Once with ``cpd.shrink='mask'`` (removed channels held at
zero, the student keeps its width) and once with ``'physical'`` (the
student, its optimizer state and the EMA copies are cut at every prune
step). Each run is its own process, so that its peak memory (max RSS) is
its own.

Reported per task and mode: wall-clock time of the whole run (the runner's
``train()``), the median time of a training iteration before the first and
after the last prune step, peak RSS, the FLOPs of the deploy checkpoint and
its val accuracy (top-1 or mIoU). Tasks:

- ``resnet50``: MMPretrain ResNet-50 on the digits at 64x64, batch 16;
- ``deit-s``: MMPretrain DeiT-S (patch 16) on the digits at 64x64, batch 16;
- ``demo-cls`` / ``demo-seg``: the demo configs (``configs/demo/``) at their
  own sizes.
"""
import argparse
import json
import os
import os.path as osp
import resource
import statistics
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(ROOT, 'configs', 'demo')


def _zoo_task(backbone: dict, neck, head: str, width: int,
              optimizer: dict) -> dict:
    """A zoo classifier on the digits at 64x64, batch 16, with the demo
    baseline's data and schedule."""
    return dict(
        baseline=osp.join(DEMO, 'resnet18-w16_1xb64_digits.py'),
        kd=osp.join(ROOT, 'configs', '_base_', 'cpd_kd.py'),
        size=64,
        batch=16,
        model=dict(
            type='ImageClassifier',
            backbone=backbone,
            neck=neck,
            head=dict(
                type=head,
                num_classes=10,
                in_channels=width,
                loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
                topk=(1, ))),
        optimizer=optimizer,
        metric='accuracy/top1')


TASKS = {
    'resnet50':
    _zoo_task(
        dict(type='ResNet', depth=50, out_indices=(3, )),
        dict(type='GlobalAveragePooling'), 'LinearClsHead', 2048,
        dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=1e-4)),
    'deit-s':
    _zoo_task(
        dict(type='VisionTransformer', arch='deit-small', img_size=64,
             patch_size=16, drop_path_rate=0.1), None,
        'VisionTransformerClsHead', 384,
        dict(type='AdamW', lr=5e-4, weight_decay=0.05)),
    'demo-cls':
    dict(
        baseline=osp.join(DEMO, 'resnet18-w16_1xb64_digits.py'),
        cpd=osp.join(DEMO, 'cpd_resnet18-w16_digits.py'),
        metric='accuracy/top1'),
    'demo-seg':
    dict(
        baseline=osp.join(DEMO, 'unet-s4-d8_fcn_1xb16_digits-seg.py'),
        cpd=osp.join(DEMO, 'cpd_unet_digits-seg.py'),
        metric='mIoU'),
}
MODES = ('mask', 'physical')


def _baseline_cfg(task: dict, work_dir: str, iters: int, seed: int):
    from mmengine.config import Config, ConfigDict

    from mmcpd.apis.experiment import prepare_config
    cfg = prepare_config(task['baseline'], work_dir, iters)
    cfg.randomness = dict(seed=seed)
    if 'model' in task:  # a zoo model on the digits at `size`
        size, batch = task['size'], task['batch']
        cfg.model = ConfigDict(
            dict(task['model'], data_preprocessor=cfg.model.get(
                'data_preprocessor', cfg.data_preprocessor)))
        for loader in ('train_dataloader', 'val_dataloader'):
            cfg[loader].dataset.img_size = size
        cfg.train_dataloader.dataset.pipeline[0].crop_size = size
        cfg.train_dataloader.batch_size = batch
        cfg.val_dataloader.batch_size = 4 * batch
        cfg.test_dataloader = cfg.val_dataloader
        cfg.optim_wrapper.optimizer = ConfigDict(task['optimizer'])
        cfg.auto_scale_lr = dict(base_batch_size=batch)
    return Config(cfg.to_dict())


def _cpd_cfg(task: dict, base_cfg, base_ckpt: str, work_dir: str,
             iters: int, target: float, mode: str, seed: int):
    from mmengine.config import Config

    from mmcpd.apis.experiment import find_cpd_hook, prepare_config
    if 'cpd' in task:
        cfg = prepare_config(task['cpd'], work_dir, iters, 'WARNING')
    else:
        # the user's path: the model's config with the CPD base inherited
        path = osp.join(work_dir, 'cpd_config.py')
        os.makedirs(work_dir, exist_ok=True)
        base_file = osp.join(work_dir, 'baseline_config.py')
        base_cfg.dump(base_file)
        with open(path, 'w') as f:
            f.write(f'_base_ = [{base_file!r}, {task["kd"]!r}]\n'
                    'cpd = dict(interval=10, num_steps=10)\n')
        cfg = prepare_config(path, work_dir, iters, 'WARNING')
        # fine-tune at a tenth of the baseline's learning rate
        cfg.optim_wrapper.optimizer.lr = \
            base_cfg.optim_wrapper.optimizer.lr / 10
    cfg.randomness = dict(seed=seed)
    cfg.load_from = base_ckpt
    hook = find_cpd_hook(cfg)
    hook.pop('end', None)
    hook.update(target=target, metric='flops', start=0, num_steps=10,
                interval=max(1, iters // 30), shrink=mode)
    return Config(cfg.to_dict())


def _iteration_timer():
    from mmengine.hooks import Hook

    class IterationTimer(Hook):
        """Wall time of every training iteration (forward to the end of
        the hooks' ``after_train_iter``, prune steps included)."""
        priority = 'LOWEST'

        def __init__(self):
            self.times, self._start = [], None

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            self._start = time.perf_counter()

        def after_train_iter(self, runner, batch_idx, data_batch=None,
                             outputs=None):
            self.times.append(time.perf_counter() - self._start)

    return IterationTimer()


def run_one(args) -> dict:
    """One CPD run in this process (``--run-one``)."""
    import torch

    from mmcpd.engine.cpd_runner import CPDRunner
    from mmcpd.apis.experiment import evaluate, find_cpd_hook
    from mmcpd.models.loading import init_model
    from mmcpd.deploy import model_complexity
    from mmcpd.utils.config import input_shape
    task = TASKS[args.task]
    base_cfg = _baseline_cfg(task, args.base_dir, args.baseline_iters,
                             args.seed)
    cfg = _cpd_cfg(task, base_cfg, args.base_ckpt, args.run_dir, args.iters,
                   args.target, args.mode, args.seed)
    runner = CPDRunner.from_cfg(cfg)
    timer = _iteration_timer()
    runner.register_hook(timer)
    start = time.perf_counter()
    runner.train()
    wall = time.perf_counter() - start
    hook = find_cpd_hook(cfg)
    deploy = osp.join(cfg.work_dir, hook.get('deploy_file') or '')
    metrics = evaluate(base_cfg, deploy, osp.join(args.run_dir, 'eval'),
                       verbose=False)
    first = hook['interval']
    last = first * hook['num_steps']
    model = init_model(base_cfg, deploy, device='cpu')
    flops = model_complexity(model, torch.randn(input_shape(base_cfg)))[
        'flops']
    del model
    return dict(
        task=args.task,
        mode=args.mode,
        seed=args.seed,
        wall_s=wall,
        # the prune step runs in the last iteration before it (and the
        # first iteration warms up)
        iter_before_s=statistics.median(timer.times[1:first - 1] or
                                        timer.times[:max(1, first - 1)]),
        iter_after_s=statistics.median(timer.times[last + 1:]),
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss /
        1024,
        flops=float(flops),
        metric=float(metrics[task['metric']]),
        threads=torch.get_num_threads())


def _train_baseline(task_key: str, args, seed: int) -> tuple:
    """Train (or find) the baseline of a task: work dir, checkpoint and
    iterations."""
    from mmengine.config import Config

    from mmcpd.apis.experiment import train
    task = TASKS[task_key]
    iters = args.baseline_iters or int(
        Config.fromfile(task['baseline']).train_cfg.max_iters)
    work = osp.join(args.work_dir, task_key, f'seed{seed}', 'baseline')
    ckpt = osp.join(work, f'iter_{iters}.pth')
    if not osp.isfile(ckpt):
        cfg = _baseline_cfg(task, work, iters, seed)
        train(cfg, verbose=False, desc=f'{task_key} baseline')
    return work, ckpt, iters


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--tasks', nargs='+', default=list(TASKS),
                        choices=list(TASKS))
    parser.add_argument('--iters', type=int, default=150,
                        help='iterations of each CPD run')
    parser.add_argument('--baseline-iters', type=int, default=None,
                        help="baseline iterations (default: the baseline "
                        "config's own)")
    parser.add_argument('--target', type=float, default=0.75,
                        help='fraction of the FLOPs to remove')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument('--modes', nargs='+', default=list(MODES),
                        choices=MODES)
    parser.add_argument('--work-dir', default='work_dirs/bench_cpd_run')
    parser.add_argument('--out', default=None, help='JSON of the results')
    # one run in a child process
    parser.add_argument('--run-one', action='store_true',
                        help=argparse.SUPPRESS)
    for name in ('task', 'mode', 'base-dir', 'base-ckpt', 'run-dir',
                 'result'):
        parser.add_argument(f'--{name}', help=argparse.SUPPRESS)
    parser.add_argument('--seed', type=int, default=0,
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_one:
        result = run_one(args)
        with open(args.result, 'w') as f:
            json.dump(result, f)
        return [result]

    results = []
    for key in args.tasks:
        for seed in args.seeds:
            base_dir, base_ckpt, base_iters = _train_baseline(
                key, args, seed)
            for mode in args.modes:
                run_dir = osp.join(args.work_dir, key, f'seed{seed}', mode)
                out = osp.join(run_dir, 'result.json')
                os.makedirs(run_dir, exist_ok=True)
                subprocess.run([
                    sys.executable, __file__, '--run-one', '--task', key,
                    '--mode', mode, '--seed', str(seed), '--base-dir',
                    base_dir, '--base-ckpt', base_ckpt, '--run-dir', run_dir,
                    '--result', out, '--iters', str(args.iters),
                    '--baseline-iters', str(base_iters),
                    '--target', str(args.target)
                ], check=True)
                with open(out) as f:
                    results.append(json.load(f))
                print(_row(results[-1]), flush=True)
    print(markdown(results))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=1)
    return results


HEADER = ('| task | mode | seed | whole run s | iter before s | iter after s '
          '| peak RSS MB | FLOPs (M) | metric |\n'
          '|---|---|---|---|---|---|---|---|---|')


def _row(r: dict) -> str:
    return (f"| {r['task']} | {r['mode']} | {r['seed']} | {r['wall_s']:.1f} "
            f"| {r['iter_before_s']:.3f} | {r['iter_after_s']:.3f} | "
            f"{r['peak_rss_mb']:.0f} | {r['flops'] / 1e6:.1f} | "
            f"{r['metric']:.2f} |")


def markdown(results: list) -> str:
    """The table, and per task the whole-run speedup of shrink mode."""
    lines = [HEADER] + [_row(r) for r in results]
    by = {(r['task'], r['seed'], r['mode']): r for r in results}
    for (task, seed, mode), r in sorted(by.items()):
        mask = by.get((task, seed, 'mask'))
        if mode == 'physical' and mask:
            whole = mask['wall_s'] / r['wall_s']
            after = mask['iter_after_s'] / r['iter_after_s']
            rss = r['peak_rss_mb'] / mask['peak_rss_mb']
            lines.append(
                f'\n{task} seed {seed}: shrink mode {whole:.2f}x faster '
                f'over the whole run, iterations after the last prune step '
                f'{after:.2f}x faster, peak RSS {rss:.2f}x of mask mode, '
                f'metric {r["metric"] - mask["metric"]:+.2f}')
    return '\n'.join(lines)


if __name__ == '__main__':
    main()
