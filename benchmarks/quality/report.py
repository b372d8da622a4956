"""Tables (mean ± std over seeds), verdicts and the plot of the quality
benchmark, from the cached run results."""
import glob
import json
import os.path as osp
import shutil
import statistics
from typing import Dict, List, Optional

from arms import GROUPS, REFERENCES, TASKS

#: Tasks reported in ``detection.md`` rather than ``quality.md``.
DETECTION = ('det', )


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


def markdown(bases: Dict, runs: List[Dict], tasks=None) -> str:
    """The tables of ``tasks`` (default: all), those with a baseline."""
    lines = []
    for task, spec in TASKS.items():
        base = bases.get((task, 'baseline'))
        if base is None or (tasks is not None and task not in tasks):
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
            ncol = len(speedups) + 1
            if spec.get('vs_control'):
                # each target's drop from the control (mean over seeds)
                head += ' | ' + ' | '.join(f'{s}x vs control'
                                           for s in speedups)
                ncol += len(speedups)
            lines += [
                f'**{group}**', '',
                f'| arm | {head} | vs none (mean over targets, seeds) |',
                '| --- |' + ' --- |' * ncol
            ]
            for arm in shown:
                cells = ' | '.join(
                    _fmt(cell(runs, task, arm, s)) for s in speedups)
                if spec.get('vs_control'):
                    cells += ' | ' + ' | '.join(
                        _drop(cell(runs, task, arm, s), control)
                        for s in speedups)
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
            if spec.get('vs_control'):
                achieved += [''] * len(speedups)
            lines += [f"| FLOPs reduction reached (mean) | "
                      f"{' | '.join(achieved)} | |", '']
    return '\n'.join(lines)


def _drop(c: Optional[Dict], control: Optional[Dict]) -> str:
    """An arm's mean minus the control's mean, with the seeds it has."""
    if c is None or control is None:
        return '-'
    return f"{c['mean'] - control['mean']:+.2f}"


def plot(bases: Dict, runs: List[Dict], path: str, rows=None) -> None:
    """Metric vs FLOPs speed-up, per task (those the rows' groups ask
    for): one row per ``(group, arms)`` of ``rows``, by default the
    distillation methods (top) and importance scores (bottom); dashed:
    baseline, dotted: control."""
    import matplotlib
    import matplotlib.ticker
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    if rows is None:
        rows = (('method', ('none', 'kd', 'cwd', 'dist')),
                ('importance', ('none', 'taylor', 'magnitude', 'random')))
    tasks = [
        t for t in TASKS if (t, 'baseline') in bases and any(
            r['task'] == t and r['speedup'] for r in runs) and any(
                t in GROUPS[g][2] for g, _ in rows)
    ]
    if not tasks:
        return
    fig, axes = plt.subplots(
        len(rows), len(tasks), figsize=(6 * len(tasks), 4 * len(rows)),
        squeeze=False)
    for col, task in enumerate(tasks):
        for row, (group, arms) in enumerate(rows):
            ax = axes[row][col]
            speedups = GROUPS[group][1]
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
            ax.set(xscale='log', xticks=speedups,
                   xticklabels=[f'{s}x' for s in speedups],
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
    """Write quality.md, quality.json and quality.png into ``work_dir``,
    and detection.md / detection.png where detection runs exist (and copy
    them to ``out``; quality.* only where they have a table); return the
    markdown."""
    bases, runs = load(work_dir)
    table = markdown(bases, runs, [t for t in TASKS if t not in DETECTION])
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
    # a work dir of detection runs only leaves the classification and
    # segmentation report in `out` as it is
    names = ['quality.md', 'quality.json', 'quality.png'] if table else []
    if any(r['task'] in DETECTION for r in runs):
        # detection (bbox mAP) in a report of its own
        det = markdown(bases, runs, DETECTION)
        with open(osp.join(work_dir, 'detection.md'), 'w') as f:
            f.write(det)
        plot(bases, runs, osp.join(work_dir, 'detection.png'),
             rows=(('detection', ('none', ) + GROUPS['detection'][0][1:]),
                   ))
        names += ['detection.md', 'detection.png']
        table += '\n' + det
    if out:
        for name in names:
            if osp.isfile(osp.join(work_dir, name)):
                shutil.copy(osp.join(work_dir, name), osp.join(out, name))
    print(table, flush=True)
    return table
