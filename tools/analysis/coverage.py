"""Which zoo models mmcpd prunes exactly: the equivalence oracle per model.

    python tools/analysis/coverage.py [CONFIG ...] [--zoo] [--det] \
        --ratio 0.3 --out coverage.json [--md docs/coverage.md] \
        [--timeout 900] \
        [--cache work_dirs/coverage] [--export-dir pruned/] [--size 224] \
        [--train-iters 4] [--round-to 8] [--latency-runs 200]

A config may end in ``@SIZE`` to give its own input size (e.g.
``mmseg::pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py@192``).
Each model runs in its own subprocess with a time limit: built with random
weights (SyncBN as BN, nothing downloaded), every parameter and buffer
randomised (norm affine and statistics, zero-initialised scales), combed,
``ratio`` of the units of each prunable group removed at random, and
checked (:func:`mmcpd.testing.coverage.check_model`): masked == pruned, output
shapes, params and FLOPs fell, the comb's FLOPs match mmengine's counter
within 2%, config + spec + weights rebuild the same outputs, the ONNX
export matches torch in onnxruntime, and after ``--train-iters`` iterations
with CPDHook the deploy checkpoint computes what the masked student does.
The kept widths follow mmcpd's width rule (``--round-to``, 1: free), and
the original and pruned ONNX files are timed in onnxruntime (1 thread,
batch 1, interleaved; ``--latency-runs 0`` skips it). ``--zoo`` runs the
list of :mod:`mmcpd.testing.coverage_zoo` (one config per architecture folder
of MMPretrain and MMSeg), ``--det`` its MMDetection list (detectors and
instance segmentors, in tensor mode; their records get their own section
of the markdown). With ``--cache DIR`` each model's record is kept in
``DIR`` and reused by the next run with the same settings, so an
interrupted run resumes where it stopped. Writes JSON and a markdown table.
"""
import argparse
import hashlib
import json
import os
import os.path as osp
import shlex
import subprocess
import sys
import tempfile
import time


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('configs', nargs='*', help='config files or pkg::')
    parser.add_argument('--zoo', action='store_true',
                        help='also every config of mmcpd.testing.coverage_zoo'
                        '.ZOO (MMPretrain, MMSeg)')
    parser.add_argument('--det', action='store_true',
                        help='also every config of mmcpd.testing.coverage_zoo'
                        '.DETECTION (MMDetection)')
    parser.add_argument('--cache', default=None,
                        help='folder of per-model records to reuse')
    parser.add_argument('--round-to', type=int, default=None,
                        help='channel block of the width rule (1: free '
                        'widths); defaults to mmcpd.prune.widths.ROUND_TO')
    parser.add_argument('--latency-runs', type=int, default=200,
                        help='most timed runs per file (0: no timing)')
    parser.add_argument('--ratio', type=float, default=0.3)
    parser.add_argument('--out', default='coverage.json')
    parser.add_argument('--md', default=None, help='markdown table path')
    parser.add_argument('--timeout', type=float, default=900,
                        help='seconds per model')
    parser.add_argument('--size', type=int, default=None)
    parser.add_argument('--export-dir', default=None,
                        help='write each pruned ONNX file and spec here')
    parser.add_argument('--train-iters', type=int, default=4,
                        help='iterations of the CPDHook check (0: skip)')
    parser.add_argument('--append', action='store_true',
                        help='keep the records already in --out and skip '
                        'their configs')
    parser.add_argument('--no-run', action='store_true',
                        help='run no model: report the cached records, and '
                        'the configs without one as not run')
    parser.add_argument('--one', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--only-trained', action='store_true',
                        help=argparse.SUPPRESS)
    parser.add_argument('--result', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def split_size(config: str):
    """``'cfg.py@192'`` -> ``('cfg.py', 192)``; else ``(cfg, None)``."""
    name, _, size = config.rpartition('@')
    if name and size.isdigit():
        return name, int(size)
    return config, None


def run_one(args) -> None:
    config, size = split_size(args.configs[0])
    if args.only_trained:
        rec = trained_check(config, size or args.size, args.train_iters)
    else:
        from mmcpd.testing.coverage import check_model
        rec = check_model(config, args.ratio, size or args.size,
                          args.export_dir, train_iters=args.train_iters,
                          round_to=args.round_to,
                          latency_runs=args.latency_runs)
    rec['size'] = size or args.size
    with open(args.result, 'w') as f:
        json.dump(rec, f)


def trained_check(config: str, size, iters: int) -> dict:
    """Only the ``trained`` check of :func:`~mmcpd.testing.coverage.
    check_model` (same seed), as a partial record: ``checks``,
    ``trained_diff``, ``error``."""
    import traceback

    from mmcpd.testing.hook_check import check_hook_run
    from mmcpd.utils.config import load_config
    rec = dict(config=config, checks={}, error=None)
    try:
        run = check_hook_run(load_config(config), size, iters=iters, seed=0)
        rec['trained_diff'] = run['diff']
        rec['checks']['trained'] = run['ok']
    except Exception as e:  # recorded, as check_model records it
        rec['checks']['trained'] = False
        rec['error'] = f'trained: {type(e).__name__}: {e}'[:500]
        rec['traceback'] = traceback.format_exc()[-2000:]
    return rec


def with_trained(base: dict, part: dict) -> dict:
    """A record of the other checks (run without ``trained``) completed by
    :func:`trained_check`'s partial record."""
    from mmcpd.testing.coverage import CHECKS
    rec = dict(base, checks=dict(base['checks']))
    rec['checks'].update(part['checks'])
    for key in ('trained_diff', 'traceback'):
        if key in part:
            rec[key] = part[key]
    if part.get('error'):
        rec['error'] = part['error']
    rec['ok'] = all(rec['checks'].get(c, False) for c in CHECKS)
    return rec


#: A model prunes "most of its channels" from this share on.
DEEP_SHARE = 0.9


def summary(records) -> str:
    """Pass count (and how many of those prune at least
    :data:`DEEP_SHARE` of their channels), median depth, and latency
    against FLOPs."""
    import statistics
    passed = [r for r in records if r['ok']]
    deep = [r for r in passed if r.get('prunable_channels', 0) >= DEEP_SHARE]
    text = (f'{len(passed)} of {len(records)} models pass every check '
            f'({len(deep)} of them with at least {DEEP_SHARE:.0%} of their '
            'channels prunable)')
    depth = [r['prunable_channels'] for r in records
             if 'prunable_channels' in r]
    if depth:
        text += (f'; median share of prunable channels '
                 f'{100 * statistics.median(depth):.1f}%')
    timed = [r for r in records if 'latency_speedup' in r]
    if timed:
        ratios = [r['latency_speedup'] / r['flops_speedup'] for r in timed]
        speedups = [r['latency_speedup'] for r in timed]
        slower = [r for r in timed if r['latency_speedup'] < 1]
        text += (f'; {len(timed)} timed, median latency speedup '
                 f'{statistics.median(speedups):.2f}x, median latency '
                 f'speedup / FLOPs speedup {statistics.median(ratios):.2f}, '
                 f'{len(slower)} slower than the original')
        if slower:
            text += ' (' + ', '.join(
                f"{r.get('model', r['config'])} {r['latency_speedup']:.2f}x"
                for r in slower) + ')'
    return text + '.'


def cache_path(args, config: str) -> str:
    """Where the record of ``config`` under these settings is cached."""
    key = json.dumps([config, args.ratio, args.size, args.train_iters,
                      args.round_to, args.latency_runs])
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    stem = split_size(config)[0].split('::')[-1].replace('/', '_')
    return osp.join(args.cache, f'{stem[:-3]}-{digest}.json')


def untrained_record(args, config: str):
    """The cached record of ``config`` under these settings but without
    the ``trained`` check, else None: the trained check then runs alone
    (where every other check passed)."""
    if not args.train_iters:
        return None
    path = cache_path(argparse.Namespace(**dict(vars(args), train_iters=0)),
                      config)
    if not osp.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def run_subprocess(config: str, args, only_trained: bool = False) -> dict:
    """``check_model`` of one config in its own process, time-limited
    (``only_trained``: :func:`trained_check`)."""
    fd, result = tempfile.mkstemp(suffix='.json')
    os.close(fd)
    cmd = [sys.executable, osp.abspath(__file__), config, '--one',
           '--ratio', str(args.ratio), '--result', result,
           '--train-iters', str(args.train_iters),
           '--round-to', str(args.round_to),
           '--latency-runs', str(args.latency_runs)]
    if only_trained:
        cmd.append('--only-trained')
    if args.size:
        cmd += ['--size', str(args.size)]
    if args.export_dir:
        cmd += ['--export-dir', args.export_dir]
    try:
        proc = subprocess.run(cmd, timeout=args.timeout,
                              capture_output=True, text=True)
        if os.path.getsize(result):
            with open(result) as f:
                return json.load(f)
        return dict(config=config, ok=False, checks={},
                    error=f'crashed (exit {proc.returncode}): '
                    f'{proc.stderr[-500:]}')
    except subprocess.TimeoutExpired:
        return dict(config=config, ok=False, checks={},
                    error=f'timed out after {args.timeout:.0f}s')
    finally:
        os.remove(result)


#: What docs/coverage.md says before the numbers.
INTRO = """# Coverage

`{command}`
builds each model with random weights in its own process, **randomises every
parameter and buffer** (norm scales and shifts, zero-initialised scales such
as layer scale and GRN's gamma, BatchNorm statistics:
`mmcpd.prune.surgery.verify.randomize_model`), combs it (`mmcpd.comb_model`,
with verification), removes {ratio:.0%} of the units of every prunable group
**at random**, the kept widths rounded by mmcpd's width rule
(`round_to={round_to}`, `mmcpd/prune/widths.py`), and checks:

- `masked`: the masked model (zeroed units, exact norms and channel mixes)
  computes what the physically pruned one does (rel. 1e-4 of the output's
  scale); where float32 round-off fails that (a deep model, or a k-NN
  graph whose neighbours round-off reorders), the same comparison in
  float64 at 1e-6 decides, marked `ok (f64)`;
- `shape`, `smaller`: output shapes unchanged, params and FLOPs fell;
- `flops`: the comb's FLOPs of the deployed forward equal mmengine's counter
  (`mmcpd.deploy.model_complexity`) within 2%, before and after pruning
  (column "comb / mmengine FLOPs": unpruned / pruned);
- `rebuild`: config + spec + weights give the pruned model's outputs;
- `onnx`: the export (legacy exporter, opset 17) matches torch in
  onnxruntime, element by element (rtol 1e-3, atol 1e-4); where that
  fails on round-off (logits of 1e5 with randomised norm statistics, or
  near zero), an error below 1e-4 of the output's scale passes (`ok
  (scaled)`, the masked check's tolerance), and so does one at most twice
  the unpruned model's own export error (`ok (as unpruned)`, below 1e-2);
- `trained`: 4 iterations of a real mmengine `Runner` with `CPDHook` (the
  config's own optimizer, Taylor importance, one prune step to 30% of the
  FLOPs, 2 more masked iterations) on random images; the deploy checkpoint
  the hook writes computes what the masked student does (rel. 1e-4).

Columns: "prunable channels" is the share of the channels of all coupled
groups that are in prunable groups after verification; "why frozen" the
reasons that froze the most channels (channels, groups); "latency speedup"
the original's median ONNX latency over the pruned model's (onnxruntime, 1
thread, batch 1, graph optimisations on, the two files timed interleaved
run by run, up to 200 runs or 10 s), then the FLOPs speedup and the
quartiles of the per-run speedups (each pruned run over the original's run
next to it: how noisy the machine was). A latency speedup below 1 is bold.

The list (`mmcpd/testing/coverage_zoo.py`, `--zoo`) has one config, the
smallest variant, of every architecture folder of MMPretrain 1.2 and
MMSegmentation 1.2.2, at 128x128 (224 where the model holds a fixed token
grid, window or position table; 192 where pyramid pooling needs a map
divisible by 6); MMDetection's list (`--det`) has its own section below.
Each model's record is cached (`--cache`), so a stopped run resumes.
"""


#: What the table of folders left out says first.
SKIPPED_LEAD = ('These folders hold no supervised classifier or segmentor, '
                'or only fine-tunes of a model another folder covers:')
DETECTION_SKIPPED_LEAD = (
    'These folders hold no model of their own (bases, datasets, training '
    "recipes, losses and samplers on another folder's model, distillation "
    'and semi-supervised wrappers), no single-image supervised detector '
    '(tracking, vision-language), or a model this CPU stack cannot run:')


def skipped_section(skipped=None, lead: str = SKIPPED_LEAD,
                    title: str = '## Folders not in the list') -> str:
    """The folders without a config, and why, in markdown."""
    if skipped is None:
        from mmcpd.testing.coverage_zoo import SKIPPED as skipped
    lines = [title, '', lead, '', '| folder | why |', '|---|---|']
    lines += [f'| `{k}` | {v} |' for k, v in skipped.items()]
    return '\n'.join(lines) + '\n'


#: What the MMDetection section says before its numbers.
DETECTION_INTRO = """## MMDetection

The list `mmcpd.testing.coverage_zoo.DETECTION` (`--det`) has one
supervised detector or instance segmentor, the smallest variant (R-18,
R-50 or the tiny one), of every architecture folder of MMDetection 3.3, at
128x128, with the same checks and columns. A detector runs in tensor mode
(`mmcpd.comb.tensor_mode.tensor_forward`) with data samples made from the
input's shape (an unpadded, unscaled image) and returns its heads' raw
outputs; those are what the checks compare. For `trained`, the random
images carry 1-3 random boxes with random labels, their masks (filled
boxes) and, for a model with a semantic branch, a random semantic map; the
data preprocessor's batch augments (large-scale jitter's padding to 1024,
YOLOX's random resizing) are dropped, so that the model trains at the size
it is combed at.
"""


def report_section(records, failed_intro: str = 'Where the others stop:'
                   ) -> str:
    """Summary line, failures and table of ``records``, in markdown."""
    from mmcpd.testing.coverage import markdown_table
    text = f'\nResult: **{summary(records)}**\n\n'
    failed = [r for r in records if not r['ok']]
    if failed:
        text += failed_intro + '\n\n'
        text += ''.join(f"- `{r['config']}`: {why_failed(r)}\n"
                        for r in failed) + '\n'
    return text + markdown_table(records) + '\n\n'


def is_detection(rec: dict) -> bool:
    """Whether a record is of an MMDetection config (its own section)."""
    return rec['config'].startswith('mmdet::')


def why_failed(rec: dict) -> str:
    """The error that stopped a model, or the checks that failed without
    one (with the FLOPs ratios for ``flops``)."""
    if rec.get('error'):  # on one line: an item of a markdown list
        return ' '.join(rec['error'].split())
    failed = [c for c, ok in rec['checks'].items() if not ok]
    text = 'failed: ' + ', '.join(failed)
    if 'flops' in failed and 'flops_ratio_pruned' in rec:
        text += (f" (comb / mmengine FLOPs {rec['flops_ratio']:.3f} "
                 f"unpruned, {rec['flops_ratio_pruned']:.3f} pruned)")
    return text


def write_reports(records, args) -> None:
    """JSON of every record; markdown with a section for MMPretrain and
    MMSeg and one for MMDetection, each with its summary, failures, table
    and skipped folders."""
    from mmcpd.testing.coverage_zoo import DETECTION_SKIPPED
    with open(args.out, 'w') as f:
        json.dump(records, f, indent=1)
    if not args.md:
        return
    # the command as it was given
    command = 'python tools/analysis/coverage.py ' + ' '.join(
        shlex.quote(a) for a in sys.argv[1:])
    others = [r for r in records if not is_detection(r)]
    detectors = [r for r in records if is_detection(r)]
    with open(args.md, 'w') as f:
        f.write(INTRO.format(command=command, ratio=args.ratio,
                             round_to=args.round_to))
        if others:
            f.write(report_section(others))
            f.write(skipped_section())
        if detectors:
            f.write('\n' + DETECTION_INTRO)
            f.write(report_section(detectors))
            f.write(skipped_section(
                DETECTION_SKIPPED, DETECTION_SKIPPED_LEAD,
                '### MMDetection folders not in the list'))


def main(argv=None):
    args = parse_args(argv)
    if not 0 < args.ratio < 1:
        raise SystemExit(f'`--ratio` should be in (0, 1), but got '
                         f'{args.ratio}')
    if args.round_to is None:
        from mmcpd.prune.widths import ROUND_TO
        args.round_to = ROUND_TO
    if args.one:
        return run_one(args)
    from mmcpd.testing.coverage import markdown_table
    configs = list(args.configs)
    if args.zoo:
        from mmcpd.testing.coverage_zoo import ZOO
        configs += [c for c in ZOO if c not in configs]
    if args.det:
        from mmcpd.testing.coverage_zoo import DETECTION
        configs += [c for c in DETECTION if c not in configs]
    if not configs:
        raise SystemExit('give configs, `--zoo` or `--det`')
    records = []
    if args.append and osp.exists(args.out):
        with open(args.out) as f:
            records = json.load(f)
    done = {r['config'] for r in records}
    if args.cache:
        os.makedirs(args.cache, exist_ok=True)
    for i, config in enumerate(configs):
        if split_size(config)[0] in done:
            continue
        cached = cache_path(args, config) if args.cache else None
        start = time.perf_counter()
        base = untrained_record(args, config) if cached else None
        if cached and osp.exists(cached):
            with open(cached) as f:
                rec = json.load(f)
            source = 'cached'
        elif args.no_run:
            rec = dict(config=split_size(config)[0], ok=False, checks={},
                       error='not run (no cached record)')
            source = 'not run'
        elif base is not None and not base['ok']:
            rec = base  # stopped before: not worth training
            source = 'cached, failed before the trained check'
        elif base is not None:  # only the trained check is new
            part = run_subprocess(config, args, only_trained=True)
            rec = with_trained(base, part)
            rec['trained_seconds'] = round(time.perf_counter() - start, 1)
            source = f"cached + trained {rec['trained_seconds']}s"
            if 'trained' in part['checks']:  # not crashes nor time-outs
                with open(cached, 'w') as f:
                    json.dump(rec, f)
        else:
            rec = run_subprocess(config, args)
            rec['seconds'] = round(time.perf_counter() - start, 1)
            source = f"{rec['seconds']}s"
            if cached and 'model' in rec:  # not crashes nor time-outs
                with open(cached, 'w') as f:
                    json.dump(rec, f)
        records.append(rec)
        status = 'ok' if rec['ok'] else f"FAIL ({rec.get('error')})"
        print(f'[{i + 1}/{len(configs)}] {config}: {status} ({source})',
              flush=True)
        write_reports(records, args)  # after each model: nothing is lost
    print(markdown_table(records))
    print(summary(records))
    return records


if __name__ == '__main__':
    main(sys.argv[1:])
