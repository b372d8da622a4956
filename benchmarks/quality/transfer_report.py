"""Tables, verdicts and plots of the transfer benchmark (``transfer.py``,
``transfer_latency.py``), from whatever runs are cached.

Per task and FLOPs target: every arm's reached FLOPs reduction (mmcpd's
counter on the final model, against the baseline), measured latency
reduction (onnxruntime, 1 thread, interleaved; ``transfer_latency.py``),
metric mean ± std over the seeds done, drop against the control, and the
margin against the best anchor of that row (the anchor arm with the best
mean: Torch-Pruning's best of magnitude / Taylor, or FastNAS), with
whether the arm is at least as small as that anchor in FLOPs and in
latency (the comparison is fair to the anchor only where it is). A
summary ranks the candidate defaults by their worst-case margin over the
rows, and checks the 8x rule (drop at most half the best anchor's).

    python benchmarks/quality/transfer_report.py \
        [--work-dir work_dirs/quality_transfer] [--out docs/quality]
"""
import argparse
import glob
import json
import os
import os.path as osp
import statistics
import sys

HERE = osp.dirname(osp.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from transfer import ANCHORS, ARMS, MMCPD, TASKS  # noqa: E402

#: arm -> (label in the tables, marker in the plot or None: in the tables
#: only); the control has a line
STYLE = dict(
    control=('control (fine-tune only)', None),
    cpd_kd=('mmcpd old defaults (mc8, r8, latency_proxy, KD/CWD)', 'o'),
    flops1=('mmcpd mc1 r1 FLOPs, no distill', 's'),
    flops1_kd=('mmcpd mc1 r1 FLOPs + KD/CWD', 'D'),
    mc1_r8=('mmcpd mc1 r8 latency_proxy + KD/CWD', '^'),
    r8_rankflops_kd=('mmcpd mc8 r8 rank_by=None (FLOPs) + KD/CWD', 'v'),
    cpd_kd_early=('mmcpd old defaults, target at 1/4', 'p'),
    flops1_kd_early=('mmcpd mc1 r1 FLOPs + KD/CWD, target at 1/4', 'd'),
    r4_kd_early=('**mmcpd defaults (mc1, r4, FLOPs, KD/CWD, target at '
                 '1/4)**', '<'),
    r4_early=('mmcpd defaults without distillation', None),
    r4_kd_e10=('mmcpd defaults, target at 1/10 (10 steps)', None),
    r4_kd_e10s5=('mmcpd defaults, target at 1/10 (5 steps)', None),
    r4_kd_fade=('mmcpd defaults, KD/CWD fading to 0 by the end', None),
    r4_kd_prune=('mmcpd defaults, KD/CWD while pruning only', None),
    r4_rankparams_kd=('mmcpd defaults ranked per parameter', None),
    r4_taylor_kd=('mmcpd defaults with Taylor importance', None),
    r4_kd_s5=('mmcpd defaults in 5 steps', None),
    r4_kd_early_matched=('mmcpd defaults at the best anchor\'s FLOPs', 'P'),
    r4_kd_cubic=('mmcpd defaults, cubic schedule', None),
    r4_kd_e10s5_fade=('mmcpd defaults, target at 1/10 (5 steps), KD/CWD '
                      'fading', None),
    r4_proxy_kd_early=('mmcpd mc1 r4 latency_proxy + KD/CWD, target at 1/4',
                       '>'),
    measured_kd_early=('mmcpd measured widths, latency_proxy + KD/CWD, 1/4',
                       'h'),
    measured_flops_kd_early=('mmcpd measured widths, FLOPs + KD/CWD, 1/4',
                             'H'),
    tp_magnitude=('Torch-Pruning 1.6.1 magnitude', 'x'),
    tp_taylor=('Torch-Pruning 1.6.1 Taylor', '+'),
    fastnas=('ModelOpt 0.47 FastNAS (div 8)', '*'))
if set(STYLE) != set(ARMS):
    raise KeyError('transfer_report.STYLE needs a label and a marker for '
                   f'the arms {sorted(set(ARMS) ^ set(STYLE))}')
LABELS = {arm: label for arm, (label, _) in STYLE.items()}


def load(work_dir):
    bases, runs, lat = {}, [], {}
    for task in TASKS:
        p = osp.join(work_dir, f'{task}_baseline', 'result.json')
        if osp.isfile(p):
            with open(p) as f:
                bases[task] = json.load(f)
        p = osp.join(work_dir, 'latency', f'{task}.json')
        if osp.isfile(p):
            with open(p) as f:
                lat[task] = json.load(f)
    for p in sorted(glob.glob(osp.join(work_dir, 'runs', '*.json'))):
        with open(p) as f:
            runs.append(json.load(f))
    return bases, runs, lat


def _name(run):
    speed = 'control' if run['speedup'] is None else f"x{run['speedup']}"
    return f"{run['task']}_{run['arm']}_{speed}_seed{run['seed']}"


def cell(runs, lat, task, arm, speedup):
    mine = [r for r in runs if r['task'] == task and r['arm'] == arm
            and r['speedup'] == speedup]
    if not mine:
        return None
    vals = [r['metric'] for r in sorted(mine, key=lambda r: r['seed'])]
    lats = [lat[task]['models'][_name(r)]['speedup'] for r in mine
            if task in lat and _name(r) in lat[task]['models']]
    return dict(
        mean=statistics.fmean(vals),
        std=statistics.stdev(vals) if len(vals) > 1 else 0.0,
        n=len(vals), seeds=sorted(r['seed'] for r in mine),
        flops_x=statistics.fmean(r['speedup_flops'] for r in mine),
        lat_x=statistics.fmean(lats) if lats else None,
        wall_s=statistics.fmean(r['wall_s'] for r in mine))


def task_rows(runs, lat, task):
    """{speedup: {arm: cell}} and the control cell."""
    control = cell(runs, lat, task, 'control', None)
    rows = {}
    for s in sorted({r['speedup'] for r in runs
                     if r['task'] == task and r['speedup']}):
        rows[s] = {a: c for a in ARMS if a != 'control'
                   for c in [cell(runs, lat, task, a, s)] if c}
    return control, rows


def best_anchor(row):
    got = {a: row[a] for a in ANCHORS if a in row}
    if not got:
        return None, None
    a = max(got, key=lambda k: got[k]['mean'])
    return a, got[a]


#: How far beyond an anchor's reductions its metric is extrapolated.
EXTRAPOLATE = 1.15


def interp(points, x):
    """Linear interpolation of (reduction, metric) points in log2 of the
    reduction; beyond the points' range by at most ``EXTRAPOLATE`` (a
    factor of the reduction) along the nearest segment, else None (and
    None with fewer than 2 points)."""
    import math
    pts = sorted(p for p in points if p[0] is not None)
    if len(pts) < 2 or x is None:
        return None
    if not pts[0][0] / EXTRAPOLATE <= x <= pts[-1][0] * EXTRAPOLATE:
        return None
    lx = math.log2(x)
    i = 0
    while i < len(pts) - 2 and lx > math.log2(pts[i + 1][0]):
        i += 1
    (x0, y0), (x1, y1) = pts[i], pts[i + 1]
    l0, l1 = math.log2(x0), math.log2(x1)
    if l1 == l0:
        return (y0 + y1) / 2
    return y0 + (y1 - y0) * (lx - l0) / (l1 - l0)


def best_anchor_at(rows, key, x, control=None):
    """The best anchor's metric interpolated at reduction ``x`` (``key``
    'flops_x' or 'lat_x') over the task's targets: (anchor, value). With
    the ``control`` cell, every anchor's curve starts there (1x: nothing
    pruned, the same fine-tuning), so a reduction below an anchor's
    smallest is interpolated towards the control, not extrapolated along
    its 4x-8x segment (which can rise above the control)."""
    best = (None, None)
    start = [] if control is None else [(1.0, control['mean'])]
    for a in ANCHORS:
        pts = start + [(row[a][key], row[a]['mean'])
                       for row in rows.values() if a in row]
        v = interp(pts, x)
        if v is not None and (best[1] is None or v > best[1]):
            best = (a, v)
    return best


def equal_margins(rows, cell, control):
    """``cell``'s margins against the best anchor's curve at its own FLOPs
    and latency reduction (:func:`best_anchor_at`): (flops, latency), each
    None where no anchor is in range."""
    out = []
    for key in ('flops_x', 'lat_x'):
        _, v = best_anchor_at(rows, key, cell[key], control)
        out.append(None if v is None else cell['mean'] - v)
    return tuple(out)


def _f(x, fmt='{:.2f}'):
    return '-' if x is None else fmt.format(x)


def paired_rows(runs, lat, task, arm, speedup):
    """:func:`task_rows` over the seeds ``arm`` has at ``speedup`` only:
    the arm, the control and the anchors compared seed for seed (the
    arms do not all have the same seeds)."""
    seeds = {r['seed'] for r in runs if r['task'] == task
             and r['arm'] == arm and r['speedup'] == speedup}
    return task_rows([r for r in runs if r['task'] == task
                      and r['seed'] in seeds], lat, task)


def paired_row(runs, lat, task, arm, speedup):
    """``arm``'s cell at ``speedup`` against the best anchor, seed for seed
    (:func:`paired_rows`): its margins, drops and whether it is as small;
    ``anchor`` and ``margin`` None where no anchor ran those seeds; None
    where the arm did not run there."""
    control, trows = paired_rows(runs, lat, task, arm, speedup)
    row = trows.get(speedup, {})
    if arm not in row:
        return None
    ba, bc = best_anchor(row)
    c = row[arm]
    drop = None if control is None else control['mean'] - c['mean']
    eq_flops, eq_lat = equal_margins(trows, c, control)
    out = dict(margin_eq_flops=eq_flops, margin_eq_lat=eq_lat, task=task,
               speedup=speedup, margin=None, anchor=ba, flops_ok=None,
               lat_ok=None, drop=drop, anchor_drop=None, n=c['n'], cell=c)
    if bc is not None:
        out.update(
            margin=c['mean'] - bc['mean'],
            flops_ok=c['flops_x'] >= bc['flops_x'],
            lat_ok=(None if c['lat_x'] is None or bc['lat_x'] is None
                    else c['lat_x'] >= bc['lat_x']),
            anchor_drop=(None if control is None else
                         control['mean'] - bc['mean']))
    return out


def summary(bases, runs, lat):
    """Per mmcpd arm: margins vs the best anchor over every row that has
    one, on the arm's own seeds (:func:`paired_row`)."""
    out = {}
    for arm in MMCPD:
        rows = [r for task in TASKS
                for s in task_rows(runs, lat, task)[1]
                for r in [paired_row(runs, lat, task, arm, s)]
                if r is not None and r['margin'] is not None]
        if rows:
            ef = [r['margin_eq_flops'] for r in rows
                  if r['margin_eq_flops'] is not None]
            el = [r['margin_eq_lat'] for r in rows
                  if r['margin_eq_lat'] is not None]
            out[arm] = dict(
                rows=rows,
                worst_eq_flops=min(ef) if ef else None,
                worst_eq_lat=min(el) if el else None,
                worst=min(r['margin'] for r in rows),
                mean=statistics.fmean(r['margin'] for r in rows))
    return out


def markdown(bases, runs, lat, summ) -> str:
    """The report: per task every arm's cells, then ``summ``
    (:func:`summary`) and the defaults row by row."""
    lines = []
    paired = {(arm, r['task'], r['speedup']): r
              for arm, sm in summ.items() for r in sm['rows']}
    for task, t in TASKS.items():
        if task not in bases:
            continue
        control, rows = task_rows(runs, lat, task)
        if control is None and not rows:
            continue
        b = bases[task]
        lines += [
            f"### {task}: {t['desc']} ({t['metric']})", '',
            f"Baseline {b['metric']:.2f} ({b['flops'] / 1e6:.2f} MFLOPs, "
            f"trained {t['baseline_iters']} iterations); control "
            f"({t['cpd_iters']} iterations of fine-tuning, no pruning): "
            + (_f(control and control['mean']) +
               (f" ± {control['std']:.2f} (n={control['n']})"
                if control else '')), '']
        if task in lat:
            L = lat[task]
            lines += [
                f"Latency: onnxruntime {L['onnxruntime']}, 1 thread, "
                f"{L['runs']} runs interleaved, baseline "
                f"{L['models']['baseline']['median_ms']:.3f} ms median; "
                f"1-min load average {L['load_before']:.1f} -> "
                f"{L['load_after']:.1f} on {L['cores']} cores (a shared, "
                'busy machine: latency ratios are noisy).', '']
        else:
            lines += ['Latency: not measured yet.', '']
        lines += [
            '| target | arm | FLOPs x | latency x | metric (mean ± std, n) '
            '| drop vs control | margin vs best anchor (same target) | '
            'as small (FLOPs / latency) | margin at equal FLOPs | margin at '
            'equal latency |', '| --- ' * 10 + '|']
        for s, row in rows.items():
            best, _ = best_anchor(row)
            for arm, c in row.items():
                if arm in ANCHORS:
                    drop = (None if control is None else
                            control['mean'] - c['mean'])
                    margin = '(anchor' + (', best)' if arm == best else ')')
                    small = eqf = eql = ''
                else:  # on the arm's seeds
                    p = paired.get((arm, task, s)) or paired_row(
                        runs, lat, task, arm, s)
                    drop = p['drop']
                    eqf, eql = (_f(p[k], '{:+.2f}')
                                for k in ('margin_eq_flops', 'margin_eq_lat'))
                    margin = _f(p['margin'], '{:+.2f}')
                    small = '' if p['margin'] is None else (
                        ('yes' if p['flops_ok'] else 'NO') + ' / ' +
                        {None: '-', True: 'yes', False: 'NO'}[p['lat_ok']])
                lines.append(
                    f"| {s}x | {LABELS[arm]} | {c['flops_x']:.2f} | "
                    f"{_f(c['lat_x'])} | {c['mean']:.2f} ± {c['std']:.2f} "
                    f"(n={c['n']}) | {_f(drop, '{:.2f}')} | {margin} | "
                    f'{small} | {eqf} | {eql} |')
        lines.append('')
    if summ:
        lines += [
            '### Candidate defaults against the best anchor of each row', '',
            'Margin: the arm\'s mean minus the best anchor\'s mean at the '
            'same FLOPs target (positive: mmcpd ahead), seed for seed: over '
            'the seeds the arm has (the anchors\' and the control\'s runs '
            'of those seeds; drops too). At equal FLOPs / '
            'latency: minus the best anchor\'s metric interpolated (linear '
            'in log2 of the reduction, through the control at 1x and its '
            '4x and 8x runs, extrapolated beyond its largest reduction by at '
            'most 15%; anchors out of that range are not compared, - where '
            'none is in range) at the '
            'arm\'s own reduction. Drop: control minus arm '
            '(positive: lower than the control). The 8x rule: drop at '
            'most half the best anchor\'s drop.', '',
            '| arm | rows | worst margin (same target) | mean margin | at '
            'least as small in FLOPs | worst margin at equal FLOPs | worst '
            'margin at equal latency | 8x rule met |', '| --- ' * 8 + '|']
        for arm, sm in sorted(summ.items(), key=lambda kv: -kv[1]['worst']):
            r8 = [r for r in sm['rows'] if r['speedup'] == 8
                  and r['drop'] is not None]
            ok8 = sum(r['drop'] <= max(r['anchor_drop'], 0) / 2 for r in r8)
            fl = sum(r['flops_ok'] for r in sm['rows'])
            lines.append(
                f"| {LABELS[arm]} | {len(sm['rows'])} | {sm['worst']:+.2f} "
                f"| {sm['mean']:+.2f} | {fl} of {len(sm['rows'])} | "
                f"{_f(sm['worst_eq_flops'], '{:+.2f}')} | "
                f"{_f(sm['worst_eq_lat'], '{:+.2f}')} | {ok8} of {len(r8)} |")
        lines.append('')
        if DEFAULTS in summ:
            lines += defaults_table(summ[DEFAULTS])
    return '\n'.join(lines)


#: The arm of the CPD bases' defaults (configs/_base_/cpd_hook.py)
DEFAULTS = 'r4_kd_early'


def defaults_table(sm) -> list:
    """Markdown lines: the defaults row by row against the best anchor
    (seed for seed), as README and docs/distill.md quote them."""
    lines = [
        f'### {LABELS[DEFAULTS]}, row by row', '',
        '| task | target | defaults: metric (n; FLOPs x, latency x) | drop '
        'vs control | best anchor: drop | margin, same target | at equal '
        'FLOPs | at equal latency |', '| --- ' * 8 + '|']
    for r in sm['rows']:
        c = r['cell']
        lines.append(
            f"| {r['task']} | {r['speedup']}x | {c['mean']:.2f} ± "
            f"{c['std']:.2f} (n={c['n']}; {c['flops_x']:.2f}x, "
            f"{_f(c['lat_x'])}x) | {_f(r['drop'])} | "
            f"{_f(r['anchor_drop'])} ({LABELS[r['anchor']]}) | "
            f"{r['margin']:+.2f} | {_f(r['margin_eq_flops'], '{:+.2f}')} | "
            f"{_f(r['margin_eq_lat'], '{:+.2f}')} |")
    lines.append('')
    return lines


def plot(bases, runs, lat, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    tasks = [t for t in TASKS if t in bases]
    if not tasks:
        return
    fig, axes = plt.subplots(2, len(tasks), figsize=(4 * len(tasks), 7),
                             squeeze=False)
    markers = {arm: m for arm, (_, m) in STYLE.items() if m}
    for j, task in enumerate(tasks):
        control, rows = task_rows(runs, lat, task)
        for i, key in enumerate(('flops_x', 'lat_x')):
            ax = axes[i][j]
            for arm, m in markers.items():
                pts = [(row[arm][key], row[arm]['mean'], row[arm]['std'])
                       for row in rows.values()
                       if arm in row and row[arm][key] is not None]
                if pts:
                    x, y, e = zip(*pts)
                    ax.errorbar(x, y, yerr=e, fmt=m, label=arm,
                                linestyle='none', capsize=2,
                                color=f'C{list(markers).index(arm)}')
            if control:
                ax.axhline(control['mean'], color='grey', linestyle='--',
                           linewidth=1, label='control')
            ax.set_xscale('log', base=2)
            ax.set_xlabel('FLOPs reduction (x)' if i == 0 else
                          'measured latency reduction (x, ORT 1 thread)')
            ax.set_ylabel(TASKS[task]['metric'])
            ax.set_title(task, fontsize=9)
            ax.grid(alpha=0.3)
    # the legend of the panel with the most arms
    best = max((ax for row in axes for ax in row),
               key=lambda ax: len(ax.get_legend_handles_labels()[1]))
    best.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument('--work-dir', default='work_dirs/quality_transfer')
    p.add_argument('--out', default=None,
                   help='also write transfer_tables.md / .json / .png here')
    args = p.parse_args(argv)
    bases, runs, lat = load(args.work_dir)
    summ = summary(bases, runs, lat)
    md = markdown(bases, runs, lat, summ)
    outs = [args.work_dir] + ([args.out] if args.out else [])
    for d in outs:
        os.makedirs(d, exist_ok=True)
        with open(osp.join(d, 'transfer_tables.md'), 'w') as f:
            f.write(md + '\n')
        with open(osp.join(d, 'transfer.json'), 'w') as f:
            keys = ('task', 'arm', 'speedup', 'seed', 'metric', 'flops',
                    'speedup_flops', 'wall_s')
            data = dict(
                baselines=bases, latency=lat,
                summary=summ,
                runs=[{k: r[k] for k in keys} for r in runs])
            json.dump(data, f, indent=1)
        plot(bases, runs, lat, osp.join(d, 'transfer.png'))
    print(md)
    return 0


if __name__ == '__main__':
    sys.exit(main())
