"""Which distillation helps CPD most? The paper's Table IV, on the demo data.

Prunes the demo segmentation baseline (UNet-S4 on digit canvases,
``configs/demo/``) to the same FLOPs target with the same CPD schedule and
seeds, once per distillation variant:

=========  ==============================================================
variant    distillation of the seg logits from the unpruned baseline
=========  ==============================================================
none       none: the task loss alone
kd         KDLoss, tau 1, weight 1 (Hinton et al., 2015), every pixel
cwd        CWDLoss, tau 4, weight 3 (Shu et al., ICCV 2021), as in CPD
dist       DISTLoss, beta 1, gamma 1, tau 1, weight 1 (Huang et al., 2022)
=========  ==============================================================

and reports, per variant, the val mIoU of the physically pruned model
(mean and std over the seeds), its FLOPs, and the training curves (task
loss, distillation loss) read from the runs' logged scalars. Writes
``ablation.json``, ``ablation.md`` and ``ablation.png`` to the work dir.

Examples:
    python tools/analysis/distill_ablation.py                 # ~25 min
    python tools/analysis/distill_ablation.py --verbose       # full logs
    python tools/analysis/distill_ablation.py --seeds 0 \\
        --variants none cwd --baseline work_dirs/demo/seg/baseline/iter_600.pth
"""
import argparse
import json
import os
import os.path as osp
import statistics
import sys
import time
from typing import Dict, List, Optional

import torch

import mmcpd  # noqa: F401  registers mmcpd's modules
from mmcpd.apis import init_model
from mmcpd.apis.experiment import (config_dir, evaluate, find_cpd_hook,
                                   prepare_config, read_scalars, shrink_data,
                                   train)
from mmcpd.deploy import model_complexity
from mmcpd.apis.progress import warnings_to_log
from mmcpd.utils import add_mmengine_safe_globals

BASELINE = 'unet-s4-d8_fcn_1xb16_digits-seg.py'
CPD = 'cpd_unet_digits-seg.py'
METRIC = 'mIoU'
TASK_LOSS = 'decode.loss_ce'
SHAPE = (1, 3, 64, 64)
VARIANTS = dict(
    none=None,
    kd=[dict(type='KDLoss', tau=1.0, loss_weight=1.0)],
    cwd=[dict(type='CWDLoss', tau=4.0, loss_weight=3.0)],
    dist=[
        dict(type='DISTLoss', beta=1.0, gamma=1.0, tau=1.0, loss_weight=1.0)
    ])
DISTILL_LOSS = dict(kd='loss_kd', cwd='loss_cwd', dist='loss_dist')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Distillation ablation of CPD on the demo segmentation '
        'data: none vs KD vs CWD vs DIST at the same pruning target')
    parser.add_argument('--work-dir', default='work_dirs/distill_ablation')
    parser.add_argument(
        '--baseline',
        help='checkpoint of the trained demo baseline; trained first '
        'when not given')
    parser.add_argument(
        '--baseline-iters',
        type=int,
        default=600,
        help='iterations of the baseline when it is trained here')
    parser.add_argument(
        '--cpd-iters',
        type=int,
        default=200,
        help='CPD iterations: pruning over the first half, then '
        'fine-tuning')
    parser.add_argument(
        '--target',
        type=float,
        default=0.5,
        help='fraction of the FLOPs to remove')
    parser.add_argument(
        '--variants',
        nargs='+',
        choices=list(VARIANTS),
        default=list(VARIANTS))
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument(
        '--from-json',
        metavar='JSON',
        help='only redo the table and the plot of a saved ablation.json '
        '(into --work-dir)')
    parser.add_argument(
        '--verbose',
        action='store_true',
        help="mmengine's full log on the console (always written to the "
        'work dirs)')
    parser.add_argument(
        '--quick',
        action='store_true',
        help='8 samples a batch, 32 train and 16 val samples (a smoke '
        'test)')
    args = parser.parse_args(argv)
    if not 0 < args.target < 1:
        parser.error(f'`--target` should be in (0, 1), got {args.target}')
    for name in ('baseline_iters', 'cpd_iters'):
        if getattr(args, name) < 2:
            parser.error(f'`--{name.replace("_", "-")}` should be >= 2')
    if args.baseline and not osp.isfile(args.baseline):
        parser.error(f'`--baseline` {args.baseline!r} does not exist')
    return args


def _prepare(args, name: str, work_dir: str, iters: int, **kwargs):
    cfg = prepare_config(
        osp.join(config_dir(), 'demo', name), work_dir, iters, **kwargs)
    if args.quick:
        shrink_data(cfg, 8, 32, 16)
    return cfg


def _flops(cfg, checkpoint: str) -> int:
    model = init_model(cfg, checkpoint)
    return int(model_complexity(model, torch.zeros(SHAPE))['flops'])


def run_variant(args, variant: str, seed: int, baseline: str) -> Dict:
    """One CPD run: train, evaluate the pruned model, read its curves."""
    work_dir = osp.join(args.work_dir, f'{variant}_seed{seed}')
    cfg = _prepare(
        args,
        CPD,
        work_dir,
        args.cpd_iters,
        # INFO: mmengine writes no scalars.json at WARNING
        log_level='INFO',
        log_interval=max(1, args.cpd_iters // 40))
    cfg.load_from = baseline
    cfg.randomness = dict(seed=seed)
    # the metric curve: validate the (masked) student 8 times
    cfg.train_cfg.val_interval = max(1, args.cpd_iters // 8)
    hook = find_cpd_hook(cfg)
    hook['target'] = args.target
    losses = VARIANTS[variant]
    if losses is None:
        cfg.distill = None  # the CPDRunner leaves the model unwrapped
    else:
        cfg.distill.distill_losses = losses
    start = time.perf_counter()
    train(cfg, args.verbose, f'{variant} seed {seed}')
    wall = time.perf_counter() - start
    pruned = osp.join(work_dir, hook.get('deploy_file', 'pruned_deploy.pth'))
    base_cfg = _prepare(args, BASELINE, work_dir, 1)
    metric = evaluate(base_cfg, pruned, osp.join(work_dir, 'eval'),
                      args.verbose)[METRIC]
    flops = _flops(base_cfg, pruned)
    curves = dict(
        iter=[], task=[], distill=[], total=[], val_iter=[], val_metric=[])
    for row in read_scalars(work_dir):
        if METRIC in row:  # a validation row
            curves['val_iter'].append(int(row['step']))
            curves['val_metric'].append(float(row[METRIC]))
        if TASK_LOSS not in row:
            continue
        curves['iter'].append(int(row['iter']))
        curves['task'].append(float(row[TASK_LOSS]))
        curves['total'].append(float(row['loss']))
        key = DISTILL_LOSS.get(variant)
        curves['distill'].append(float(row[key]) if key else None)
    return dict(
        variant=variant,
        seed=seed,
        hook={k: list(v) if isinstance(v, tuple) else v
              for k, v in hook.items()},
        metric=metric,
        flops=flops,
        wall_s=wall,
        curves=curves)


def summarise(runs: List[Dict], base: Dict) -> Dict[str, Dict]:
    """Mean and std of the metric per variant."""
    out = {}
    for variant in dict.fromkeys(r['variant'] for r in runs):
        mine = [r for r in runs if r['variant'] == variant]
        values = [r['metric'] for r in mine]
        out[variant] = dict(
            mean=statistics.fmean(values),
            std=statistics.stdev(values) if len(values) > 1 else 0.0,
            values=values,
            flops=statistics.fmean(r['flops'] for r in mine),
            delta=statistics.fmean(values) - base['metric'])
    return out


def markdown(summary: Dict[str, Dict], base: Dict, args) -> str:
    lines = [
        f"Baseline: mIoU {base['metric']:.2f}, "
        f"{base['flops'] / 1e6:.1f} MFLOPs. CPD to "
        f"{1 - args.target:.0%} of the FLOPs, {args.cpd_iters} iterations, "
        f"seeds {args.seeds}.", '',
        '| distillation | pruned mIoU (mean ± std) | vs baseline | '
        'MFLOPs | per seed |', '| --- | --- | --- | --- | --- |'
    ]
    for variant, row in summary.items():
        seeds = ', '.join(f'{v:.2f}' for v in row['values'])
        lines.append(f"| {variant} | {row['mean']:.2f} ± {row['std']:.2f} | "
                     f"{row['delta']:+.2f} | {row['flops'] / 1e6:.1f} | "
                     f'{seeds} |')
    return '\n'.join(lines) + '\n'


def plot(runs: List[Dict], summary: Dict[str, Dict], base: Dict,
         path: str) -> None:
    """Task loss and distillation loss over the iterations (mean over
    seeds), and the pruned mIoU per variant."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 4, figsize=(19, 4.2))
    colors = {v: f'C{i}' for i, v in enumerate(VARIANTS)}
    for variant in summary:
        mine = [r['curves'] for r in runs if r['variant'] == variant]
        iters = mine[0]['iter']
        style = dict(label=variant, color=colors[variant])
        task = np.mean([c['task'] for c in mine], axis=0)
        axes[0].plot(iters, task, **style)
        if mine[0]['distill'][0] is not None:
            dist = np.mean([c['distill'] for c in mine], axis=0)
            axes[1].plot(iters, dist / dist[0], **style)
        if mine[0]['val_iter']:
            val = np.mean([c['val_metric'] for c in mine], axis=0)
            axes[2].plot(mine[0]['val_iter'], val, marker='o', **style)
    axes[0].set(
        title='task loss (decode CE), mean of seeds',
        xlabel='iteration',
        yscale='log')
    axes[1].set(
        title='distillation loss / its first value',
        xlabel='iteration',
        yscale='log')
    axes[2].axhline(base['metric'], color='k', ls='--', label='baseline')
    axes[2].set(
        title='val mIoU while pruning (masked student)',
        xlabel='iteration',
        ylabel='mIoU (%)')
    names = list(summary)
    axes[3].bar(
        names, [summary[n]['mean'] for n in names],
        yerr=[summary[n]['std'] for n in names],
        color=[colors[n] for n in names],
        capsize=4)
    axes[3].axhline(base['metric'], color='k', ls='--', label='baseline')
    axes[3].set(title='pruned model: val mIoU', ylabel='mIoU (%)')
    for ax in axes:
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(base: Dict, runs: List[Dict], args) -> Dict[str, Dict]:
    """Write ablation.json, .md and .png; print the table."""
    summary = summarise(runs, base)
    table = markdown(summary, base, args)
    with open(osp.join(args.work_dir, 'ablation.json'), 'w') as f:
        json.dump(
            dict(
                baseline=base,
                summary=summary,
                runs=runs,
                variants={v: VARIANTS[v]
                          for v in summary},
                settings=vars(args)),
            f,
            indent=2)
    with open(osp.join(args.work_dir, 'ablation.md'), 'w') as f:
        f.write(table)
    plot(runs, summary, base, osp.join(args.work_dir, 'ablation.png'))
    print('\n' + table, flush=True)
    print(f'written: {args.work_dir}/ablation.json, .md, .png; full logs '
          f'of each run in {args.work_dir}/<variant>_seed<seed>/<time>/',
          flush=True)
    return summary


def main(argv=None) -> Optional[Dict]:
    args = parse_args(argv)
    add_mmengine_safe_globals()
    # without --verbose, Python warnings go to the runs' log files
    with warnings_to_log(not args.verbose):
        return _main(args)


def _main(args) -> Optional[Dict]:
    """The baseline, every variant and seed, the report."""
    os.makedirs(args.work_dir, exist_ok=True)
    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
        for key in ('target', 'cpd_iters', 'seeds'):
            setattr(args, key, saved['settings'][key])
        return report(saved['baseline'], saved['runs'], args)
    base_cfg = _prepare(args, BASELINE, osp.join(args.work_dir, 'baseline'),
                        args.baseline_iters)
    baseline = args.baseline
    if baseline is None:
        print(f'training the baseline ({args.baseline_iters} iters)',
              flush=True)
        baseline = train(base_cfg, args.verbose, 'baseline')
    base = dict(
        checkpoint=baseline,
        metric=evaluate(base_cfg, baseline, osp.join(args.work_dir, 'eval'),
                        args.verbose)[METRIC],
        flops=_flops(base_cfg, baseline))
    runs = []
    total = len(args.variants) * len(args.seeds)
    for seed in args.seeds:
        for variant in args.variants:
            print(f'[{len(runs) + 1}/{total}] CPD with distillation '
                  f'{variant!r}, seed {seed}', flush=True)
            runs.append(run_variant(args, variant, seed, baseline))
            print(f"    mIoU {runs[-1]['metric']:.2f} "
                  f"({runs[-1]['wall_s']:.0f} s)", flush=True)
    return report(base, runs, args)


if __name__ == '__main__':
    sys.exit(0 if main() else 1)
