"""Tables (mean ± std over seeds), verdicts and the plot of the quality
benchmark, from the cached run results."""
import glob
import json
import os.path as osp
import shutil
import statistics
from typing import Dict, List, Optional

from arms import GROUPS, REFERENCES, TASKS


def load(work_dir: str):
    """Baselines (``{(task, 'baseline'|'wide'): result}``) and runs."""
    bases = {}
    for task in TASKS:
        for tag in ('baseline', 'wide'):
            path = osp.join(work_dir, f'{task}_{tag}', 'result.json')
            if osp.isfile(path):
                with open(path) as f:
                    bases[(task, tag)] = json.load(f)
    runs = []
    for path in sorted(glob.glob(osp.join(work_dir, 'runs', '*.json'))):
        with open(path) as f:
            runs.append(json.load(f))
    return bases, runs


def cell(runs: List[Dict], task: str, arm: str, speedup) -> Optional[Dict]:
    """Mean, std, values and FLOPs of one arm at one speed-up."""
    mine = [
        r for r in runs if r['task'] == task and r['arm'] == arm
        and r['speedup'] == speedup
    ]
    if not mine:
        return None
    values = [r['metric'] for r in sorted(mine, key=lambda r: r['seed'])]
    return dict(
        mean=statistics.fmean(values),
        std=statistics.stdev(values) if len(values) > 1 else 0.0,
        values=values,
        flops=statistics.fmean(r['flops'] for r in mine),
        wall_s=statistics.fmean(r['wall_s'] for r in mine))


def _fmt(c: Optional[Dict]) -> str:
    if c is None:
        return '-'
    n = len(c['values'])
    seeds = '' if n == 3 else f' (n={n})'
    return f"{c['mean']:.2f} ± {c['std']:.2f}{seeds}"


def verdict(runs: List[Dict], task: str, arm: str, speedups,
            ref: str = 'none') -> Optional[Dict]:
    """Mean over speed-ups and seeds of ``arm`` minus ``ref`` (paired by
    speed-up and seed), and on how many of those pairs it wins."""
    diffs = []
    for speedup in speedups:
        a = {r['seed']: r['metric'] for r in runs if r['task'] == task
             and r['arm'] == arm and r['speedup'] == speedup}
        b = {r['seed']: r['metric'] for r in runs if r['task'] == task
             and r['arm'] == ref and r['speedup'] == speedup}
        diffs += [a[s] - b[s] for s in a if s in b]
    if not diffs:
        return None
    return dict(delta=statistics.fmean(diffs),
                wins=sum(d > 0 for d in diffs), pairs=len(diffs))


def compute(bases: Dict, runs: List[Dict], task: str) -> str:
    """One line: the training time that a task's cached results took,
    baselines and runs (one CPU thread each; setup and evaluation not
    counted)."""
    mine = [r['wall_s'] for r in runs if r['task'] == task]
    base = sum(b['wall_s'] for (t, _), b in bases.items() if t == task)
    mean = statistics.fmean(mine) if mine else 0.0
    return (f'Compute: baselines {base / 60:.1f} min, {len(mine)} runs '
            f'{sum(mine) / 60:.1f} min of training ({mean:.0f} s a run), '
            'one thread each, as measured (a shared machine counts its '
            'load in).')


def markdown(bases: Dict, runs: List[Dict]) -> str:
    lines = []
    for task, spec in TASKS.items():
        base = bases.get((task, 'baseline'))
        if base is None:
            continue
        control = cell(runs, task, 'control', None)
        lines += [
            f"### {task}: {spec['config']} ({spec['metric_name']})", '',
            f"Baseline {base['metric']:.2f} ({base['flops'] / 1e6:.2f} "
            f"MFLOPs); control (baseline fine-tuned for the same "
            f"{spec['cpd_iters']} iterations, no pruning): {_fmt(control)}.",
            ''
        ]
        wide = bases.get((task, 'wide'))
        if wide is not None:
            lines += [f"Wide teacher: {wide['metric']:.2f} "
                      f"({wide['flops'] / 1e6:.2f} MFLOPs).", '']
        lines += [compute(bases, runs, task), '']
        for group, (arms, speedups, tasks) in GROUPS.items():
            if task not in tasks:
                continue
            shown = list(REFERENCES.get(group, ())) + list(arms)
            if not any(cell(runs, task, a, s) for a in arms
                       for s in speedups):
                continue
            head = ' | '.join(f'{s}x FLOPs' for s in speedups)
            lines += [
                f'**{group}**', '',
                f'| arm | {head} | vs none (mean over targets, seeds) |',
                '| --- |' + ' --- |' * (len(speedups) + 1)
            ]
            for arm in shown:
                cells = ' | '.join(
                    _fmt(cell(runs, task, arm, s)) for s in speedups)
                v = verdict(runs, task, arm, speedups)
                if arm == 'none' or v is None:
                    vs = '-'
                else:
                    vs = (f"{v['delta']:+.2f} (better in {v['wins']} of "
                          f"{v['pairs']})")
                lines.append(f'| {arm} | {cells} | {vs} |')
            achieved = []
            for speedup in speedups:
                flops = [r['flops'] for r in runs if r['task'] == task
                         and r['arm'] in shown and r['speedup'] == speedup]
                achieved.append(
                    f"{base['flops'] / statistics.fmean(flops):.2f}x"
                    if flops else '-')
            lines += [f"| FLOPs reduction reached (mean) | "
                      f"{' | '.join(achieved)} | |", '']
    return '\n'.join(lines)


def plot(bases: Dict, runs: List[Dict], path: str) -> None:
    """Metric vs FLOPs speed-up: distillation methods (top) and importance
    scores (bottom), per task; dashed: baseline, dotted: control."""
    import matplotlib
    import matplotlib.ticker
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    tasks = [
        t for t in TASKS if (t, 'baseline') in bases and any(
            r['task'] == t and r['speedup'] for r in runs)
    ]
    if not tasks:
        return
    fig, axes = plt.subplots(
        2, len(tasks), figsize=(6 * len(tasks), 8), squeeze=False)
    rows = (('method', ('none', 'kd', 'cwd', 'dist')),
            ('importance', ('none', 'taylor', 'magnitude', 'random')))
    for col, task in enumerate(tasks):
        for row, (group, arms) in enumerate(rows):
            ax = axes[row][col]
            speedups = (2, 4, 8)
            for i, arm in enumerate(arms):
                cells = [(s, cell(runs, task, arm, s)) for s in speedups]
                cells = [(s, c) for s, c in cells if c]
                if not cells:
                    continue
                label = 'hessian' if group == 'importance' and \
                    arm == 'none' else arm
                ax.errorbar([s * (1 + 0.03 * i) for s, _ in cells],
                            [c['mean'] for _, c in cells],
                            yerr=[c['std'] for _, c in cells],
                            marker='o', capsize=3, label=label)
            ax.axhline(bases[(task, 'baseline')]['metric'], color='k',
                       ls='--', label='baseline')
            control = cell(runs, task, 'control', None)
            if control:
                ax.axhline(control['mean'], color='grey', ls=':',
                           label='control')
            ax.set(xscale='log', xticks=speedups, xticklabels=['2x', '4x',
                                                               '8x'],
                   xlabel='FLOPs reduction',
                   ylabel=TASKS[task]['metric_name'],
                   title=f'{task}: {group} (mean ± std over seeds)')
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(work_dir: str, out: Optional[str]) -> str:
    """Write quality.md, quality.json and quality.png into ``work_dir``
    (and copy them to ``out``); return the markdown."""
    bases, runs = load(work_dir)
    table = markdown(bases, runs)
    summary = {}
    for task in TASKS:
        for arm in dict.fromkeys(r['arm'] for r in runs if r['task'] == task):
            for speedup in (None, 2, 4, 8):
                c = cell(runs, task, arm, speedup)
                if c:
                    summary[f'{task}/{arm}/{speedup}'] = c
    with open(osp.join(work_dir, 'quality.md'), 'w') as f:
        f.write(table)
    with open(osp.join(work_dir, 'quality.json'), 'w') as f:
        json.dump(dict(baselines={'/'.join(k): v
                                  for k, v in bases.items()},
                       summary=summary), f, indent=1)
    plot(bases, runs, osp.join(work_dir, 'quality.png'))
    if out:
        for name in ('quality.md', 'quality.json', 'quality.png'):
            if osp.isfile(osp.join(work_dir, name)):
                shutil.copy(osp.join(work_dir, name), osp.join(out, name))
    print(table, flush=True)
    return table
