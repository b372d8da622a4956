"""One model through the whole chain: build, comb, prune, rebuild, export.

:func:`check_model` is what ``tools/analysis/coverage.py`` runs for each
config (in its own process, with a time limit). Every check is recorded with
its outcome, so a table over many models shows where each one stops.
"""
import copy
import os
import os.path as osp
import re
import tempfile
import time
import traceback
import warnings
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from mmcpd.apis.pruning import comb_model
from mmcpd.comb.cuda_only_ops import cuda_only_ops
from mmcpd.prune.surgery.positions import unit_channels
from mmcpd.prune.spec import apply_spec
from mmcpd.prune.surgery.verify import (masked_output, outputs_match,
                                        same_random)
from mmcpd.prune.widths import (ROUND_TO, mixed_prefix, units_to_remove,
                                width_quanta)
from mmcpd.utils.config import input_shape, load_config

#: The checks, in the order they run.
CHECKS = ('build', 'comb', 'prune', 'masked', 'shape', 'smaller', 'flops',
          'rebuild', 'onnx', 'trained')

#: Largest relative gap between the comb's FLOPs and mmengine's counter.
FLOPS_RTOL = 0.02

#: Seconds of latency timing per model (both files, interleaved).
LATENCY_BUDGET_S = 10.0

#: The masked check again in float64 (when float32 round-off fails it):
#: largest difference relative to the output's scale.
MASKED_RTOL_FLOAT64 = 1e-6
#: The ONNX check, when the per-element tolerance fails (a few logits of
#: 1e5 with randomised norm statistics, or near zero): the pruned file's
#: error relative to the output's scale passes at the masked check's
#: tolerance, or at most this many times the unpruned file's (the
#: exporter's and runtime's own error on this model, e.g. T2T-ViT's 7e-3)
#: and below ``ONNX_ROUNDOFF_CAP``.
ONNX_SCALED_RTOL = 1e-4
ONNX_FLOOR_FACTOR = 2.0
ONNX_ROUNDOFF_CAP = 1e-2


def masked_check_float64(masked, model, result, removed, x) -> float:
    """Masked vs pruned in float64: the largest difference relative to the
    output's scale. Deep or discrete models (a k-NN graph picks neighbours
    by distances that round-off reorders) fail the float32 check by
    round-off alone; in float64 the same computation agrees to 1e-6 unless
    the cut is wrong. ``model`` is returned to float32."""
    from mmcpd.deploy.adapter import TensorModeAdapter

    try:
        expected = masked_output(masked.double(), result, removed,
                                 x.double(),
                                 lambda m, i: TensorModeAdapter(m)(i))
        with torch.no_grad(), same_random():
            got = TensorModeAdapter(model.double())(x.double())
        return outputs_match(expected, got, rtol=MASKED_RTOL_FLOAT64)[1]
    finally:
        model.float()


def scaled_onnx_error(path: str, model, x) -> float:
    """``max |onnx - torch| / max |torch|`` over the outputs."""
    from mmcpd.deploy import verify_onnx

    diffs = verify_onnx(path, model, x, rtol=0.0, atol=float('inf')).values()
    scale = max(d['scale'] for d in diffs)
    return max(d['max_abs'] for d in diffs) / (scale + 1e-12)


def unpruned_onnx_error(cfg, seed: int, x, folder: str) -> float:
    """:func:`scaled_onnx_error` of the unpruned model (built and
    randomised again from ``seed``, as the check built it)."""
    from mmcpd.deploy import export_onnx
    from mmcpd.testing.random_init import random_model

    model = random_model(cfg, seed).eval()
    path = export_onnx(model, x, osp.join(folder, 'unpruned_floor.onnx'))
    try:
        return scaled_onnx_error(path, model, x)
    finally:
        os.remove(path)


def _name(cfg) -> str:
    model = cfg.model
    if model.get('type', '').endswith('DistillWrapper'):
        model = model.student
    backbone = model.get('backbone', {})
    parts = [str(model.get('type', '?'))]
    if backbone:
        arch = backbone.get('arch', backbone.get('depth', ''))
        parts.append(f"{backbone.get('type', '')}{'-' if arch else ''}"
                     f'{arch}')
    head = model.get('decode_head', {})
    if isinstance(head, dict) and head:
        parts.append(str(head.get('type', '')))
    return ' '.join(p for p in parts if p)


def frozen_summary(result) -> Dict[str, List[int]]:
    """Why channels stay: frozen groups by reason, ``[groups, channels]``.

    Reasons are shortened to their kind (``failed verification``, ``no
    handler for op `einsum```, ``attribute follows two widths``, ...), so
    that they count across a model.
    """
    out: Dict[str, List[int]] = {}
    for group in result.frozen:
        reason = (group.frozen or '').split(' in ')[0]
        reason = reason.split(': ')[0]
        reason = re.sub(r'attribute `[^`]*`', 'attribute', reason)
        if not reason:  # not frozen: its channels are tied into one unit
            reason = 'one unit' if group.num_units == 1 else '?'
        entry = out.setdefault(reason, [0, 0])
        entry[0] += 1
        entry[1] += group.channels
    return dict(sorted(out.items(), key=lambda kv: -kv[1][1]))


def random_rounded_units(result, model, ratio: float, round_to: int,
                         seed: int = 0) -> Dict[int, List[int]]:
    """``ratio`` of every prunable group's units, drawn at random, the kept
    widths rounded by the width rule (:mod:`mmcpd.prune.widths`).

    Where a group's units differ in width (a split with a remainder,
    ShuffleNet V1's gathered slabs), units go in a random order and the
    cut is the prefix whose kept root channels are the multiple of the
    group's quantum nearest to ``1 - ratio`` of them, as the product's
    selection keeps them (:func:`~mmcpd.prune.selection.select_units`);
    none go where no prefix keeps such a multiple.
    """
    quanta = width_quanta(model, result.prunable, round_to)
    gen = torch.Generator().manual_seed(seed)
    removed = {}
    for group in result.prunable:
        channels = unit_channels(group)
        quantum = quanta[group.id]
        if quantum > 1 and len(set(channels)) > 1:
            order = torch.randperm(group.num_units, generator=gen).tolist()
            k = mixed_prefix(channels, order, ratio, quantum)
            units = order[:k]
        else:
            k = units_to_remove(group, ratio, quantum)
            units = torch.randperm(group.num_units,
                                   generator=gen)[:k].tolist() if k else []
        if units:
            removed[group.id] = sorted(units)
    return removed


def paired_latency(paths: Sequence[str], max_runs: int = 200,
                   budget_s: float = LATENCY_BUDGET_S) -> dict:
    """Original vs pruned ONNX latency: 1 thread, batch 1, interleaved.

    The number of runs fits ``budget_s`` (at least 20, at most
    ``max_runs``). Returns both medians (ms), the speedup of the medians
    and the quartiles of the per-run speedups (each run of the pruned file
    paired with the original's run next to it), which say how noisy the
    machine was.
    """
    from mmcpd.deploy.latency import measure_latencies
    probe = measure_latencies(paths, warmup=3, runs=3, threads=1,
                              progress=False, interleave=True)
    per_pair = sum(r.stats.median_ms for r in probe) / 1e3
    runs = int(min(max_runs, max(20, budget_s / max(per_pair, 1e-6))))
    base, pruned = measure_latencies(paths, warmup=5, runs=runs, threads=1,
                                     progress=False, interleave=True)
    ratios = np.asarray(base.times_ms) / np.asarray(pruned.times_ms)
    return dict(
        latency_ms=[round(base.stats.median_ms, 3),
                    round(pruned.stats.median_ms, 3)],
        latency_speedup=round(base.stats.median_ms / pruned.stats.median_ms,
                              3),
        latency_quartiles=[round(float(q), 3)
                           for q in np.percentile(ratios, [25, 75])],
        latency_runs=runs)


@cuda_only_ops(import_mmcv=True)  # mmcv ops without a CPU kernel
def check_model(config: str,
                ratio: float = 0.3,
                size=None,
                export_dir: Optional[str] = None,
                train_iters: int = 4,
                seed: int = 0,
                round_to: int = ROUND_TO,
                latency_runs: int = 200) -> dict:
    """Run the chain on one config's model and record every check.

    The model's parameters and buffers are randomised first
    (:func:`~mmcpd.testing.random_init.random_model`: norm affine and
    statistics, zero-initialised scales; positive where the model's
    initialisation makes them positive), and random units are removed, so
    that random init cannot hide a wrong cut.

    Checks: ``build``; ``comb`` (verified, something prunable); ``prune``
    (``ratio`` of every group's units, drawn at random, kept widths rounded
    by the width rule of ``round_to``); ``masked``: the
    masked model (zeroed units, exact norms) computes what the pruned one
    does (rel. 1e-4; when round-off fails that, the same in float64 at
    :data:`MASKED_RTOL_FLOAT64`); ``shape``; ``smaller`` (params and FLOPs
    by mmengine's counter); ``flops``: the comb's FLOPs of the deployed
    forward match mmengine's counter within ``FLOPS_RTOL`` before and after
    pruning;
    ``rebuild``: config + spec + weights give the pruned outputs;
    ``onnx``: the export matches torch in onnxruntime (per element, or,
    where that fails, its error relative to the output's scale is below
    :data:`ONNX_SCALED_RTOL`, or at most :data:`ONNX_FLOOR_FACTOR` times
    the unpruned model's export's and below :data:`ONNX_ROUNDOFF_CAP`);
    ``trained``: after
    ``train_iters`` iterations with CPDHook (:func:`~mmcpd.testing.hook_check.
    check_hook_run`), the deploy checkpoint computes what the masked student
    does (0 skips it).

    Args:
        config (str): Config path or ``pkg::path``.
        ratio (float): Fraction of the units of each prunable group to
            remove.
        size (int | tuple, optional): Input size; defaults to the config's
            ``crop_size`` or 224.
        export_dir (str, optional): Where to write the pruned model's ONNX
            file and spec.
        train_iters (int): Iterations of the ``trained`` check; 0 skips it.
            Defaults to 4.
        seed (int): Seed of the randomised weights and units. Defaults to 0.
        round_to (int): Channel block of the width rule
            (:func:`~mmcpd.prune.widths.width_quanta`); 1: free widths.
            Defaults to ``ROUND_TO`` (8).
        latency_runs (int): At most this many timed runs of the original
            and the pruned ONNX files (1 thread, batch 1, interleaved; see
            :func:`paired_latency`); 0 skips the timing. Defaults to 200.

    Returns:
        dict: ``checks`` (name -> bool), numbers (params, FLOPs by both
        counters, prunable channels, comb seconds, latencies and speedups),
        ``frozen`` (:func:`frozen_summary`), the ``error`` that stopped the
        chain, and ``ok``.
    """
    from mmcpd.deploy import export_onnx, model_complexity, verify_onnx
    from mmcpd.deploy.adapter import TensorModeAdapter
    from mmcpd.deploy.onnx_export import ONNXMismatchError
    from mmcpd.prune.cost import model_cost
    from mmcpd.prune.surgery.mask import zero_units
    from mmcpd.prune.surgery.physical import prune_units
    from mmcpd.testing.hook_check import check_hook_run
    from mmcpd.testing.random_init import random_model

    rec = dict(config=config, ok=False, checks={}, error=None)
    checks = rec['checks']
    step = 'build'
    try:
        cfg = load_config(config)
        rec['model'] = _name(cfg)
        model = random_model(cfg, seed)
        x = torch.randn(*input_shape(cfg, size),
                        generator=torch.Generator().manual_seed(seed))
        rec['input'] = list(x.shape)
        original = copy.deepcopy(model)
        adapter = TensorModeAdapter(model)
        with torch.no_grad():
            y0 = adapter(x)
        before = model_complexity(model, x)
        checks['build'] = True

        step = 'comb'
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            result = comb_model(model, x)
        rec['comb_seconds'] = round(time.perf_counter() - start, 2)
        rec['groups'] = len(result.groups)
        rec['prunable_groups'] = len(result.prunable)
        total = sum(g.channels for g in result.groups)
        rec['prunable_channels'] = round(
            sum(g.channels for g in result.prunable) / max(total, 1), 3)
        rec['frozen'] = frozen_summary(result)
        checks['comb'] = bool(result.prunable)

        step = 'prune'
        removed = random_rounded_units(result, model, ratio, round_to, seed)
        rec['round_to'] = round_to
        masked = copy.deepcopy(model)
        spec = prune_units(model, result, removed)
        checks['prune'] = bool(spec)

        step = 'masked'
        zero_units(masked, result, removed)
        # each forward from the same random state: a model that draws
        # random numbers in eval mode (SegNeXt's Hamburger) draws the same
        expected = masked_output(masked, result, removed, x,
                                 lambda m, i: TensorModeAdapter(m)(i))
        with torch.no_grad(), same_random():
            y1 = adapter(x)
        same, rec['masked_diff'] = outputs_match(expected, y1, rtol=1e-4)
        if not same:  # round-off, or a wrong cut? float64 tells them apart
            rec['masked_diff_float64'] = masked_check_float64(
                masked, model, result, removed, x)
            same = rec['masked_diff_float64'] <= MASKED_RTOL_FLOAT64
        checks['masked'] = same
        del masked
        checks['shape'] = [t.shape for t in y0] == [t.shape for t in y1]

        step = 'smaller'
        after = model_complexity(model, x)
        rec.update(
            params=before['params'], params_pruned=after['params'],
            flops=before['flops'], flops_pruned=after['flops'])
        checks['smaller'] = (after['params'] < before['params']
                             and after['flops'] < before['flops'])

        step = 'flops'
        cost = model_cost(original, result, 'flops')
        batch = x.shape[0]
        rec['comb_flops'] = cost.total() * batch
        rec['comb_flops_pruned'] = cost.total(removed) * batch
        rec['flops_ratio'] = round(rec['comb_flops'] / before['flops'], 4)
        rec['flops_ratio_pruned'] = round(
            rec['comb_flops_pruned'] / after['flops'], 4)
        checks['flops'] = all(
            abs(r - 1) <= FLOPS_RTOL
            for r in (rec['flops_ratio'], rec['flops_ratio_pruned']))

        folder = export_dir or tempfile.mkdtemp()
        os.makedirs(folder, exist_ok=True)
        stem = osp.splitext(osp.basename(config.split('::')[-1]))[0]
        base_path = osp.join(folder, f'{stem}.onnx')
        if latency_runs:  # before `rebuild` resizes `original`
            step = 'onnx'
            export_onnx(original, x, base_path)

        step = 'rebuild'
        rebuilt = apply_spec(original, spec)
        # not strict: a model's own load hook may drop buffers that it
        # rebuilds (MMPretrain's Swin-V2 relative position tables); the
        # outputs must match all the same
        unexpected = rebuilt.load_state_dict(
            model.state_dict(), strict=False).unexpected_keys
        if unexpected:
            raise KeyError(f'the rebuilt model has no {unexpected[:3]}')
        with torch.no_grad(), same_random():
            y2 = TensorModeAdapter(rebuilt)(x)
        checks['rebuild'] = outputs_match(y1, y2, rtol=1e-6)[0]

        step = 'onnx'
        path = osp.join(folder, f'{stem}_pruned.onnx')
        export_onnx(model, x, path)
        try:
            diffs = verify_onnx(path, model, x)
            rec['onnx_max_abs'] = max(d['max_abs'] for d in diffs.values())
        except ONNXMismatchError as e:
            # beyond the per-element tolerance: pruning's fault only if the
            # unpruned model's own export is much closer
            error = rec['onnx_error'] = scaled_onnx_error(path, model, x)
            if error > ONNX_SCALED_RTOL:
                floor = rec['onnx_error_unpruned'] = unpruned_onnx_error(
                    cfg, seed, x, folder)
                if error > min(ONNX_FLOOR_FACTOR * floor, ONNX_ROUNDOFF_CAP):
                    raise ONNXMismatchError(
                        f"{e}; relative to the output's scale {error:.2e}, "
                        f"the unpruned model's export {floor:.2e}") from e
        checks['onnx'] = True
        if latency_runs:
            step = 'latency'
            rec.update(paired_latency([base_path, path], latency_runs))
            rec['flops_speedup'] = round(before['flops'] / after['flops'], 3)
            if not export_dir:
                os.remove(base_path)
        if export_dir:
            spec.save(osp.join(folder, f'{stem}_pruned.json'))
        else:
            os.remove(path)

        if train_iters:
            step = 'trained'
            run = check_hook_run(cfg, size, iters=train_iters, seed=seed)
            rec['trained_diff'] = run['diff']
            checks['trained'] = run['ok']
    except Exception as e:  # the table records why a model stopped
        checks.setdefault(step, False)
        rec['error'] = f'{step}: {type(e).__name__}: {e}'[:500]
        rec['traceback'] = traceback.format_exc()[-2000:]
    wanted = CHECKS if train_iters else CHECKS[:-1]
    rec['ok'] = all(checks.get(c, False) for c in wanted)
    return rec


def why_frozen(rec: dict, top: int = 3) -> str:
    """The ``top`` reasons that froze the most channels, e.g.
    ``model output 1000 ch (1 gr.)``."""
    frozen = rec.get('frozen')
    if frozen is None:
        return '-'
    parts = [f'{reason} {ch} ch ({n} gr.)'
             for reason, (n, ch) in list(frozen.items())[:top]]
    more = len(frozen) - top
    return '; '.join(parts + ([f'+{more} more'] if more > 0 else [])) or '-'


def latency_cell(rec: dict) -> str:
    """``1.42x (FLOPs 1.62x; 1.30-1.55)``: speedup of the median latency,
    FLOPs speedup, quartiles of the per-run speedups."""
    if 'latency_speedup' not in rec:
        return '-'
    low, high = rec['latency_quartiles']
    speed = f"{rec['latency_speedup']:.2f}x"
    if rec['latency_speedup'] < 1:
        speed = f'**{speed}**'
    return (f"{speed} (FLOPs {rec['flops_speedup']:.2f}x; "
            f'{low:.2f}-{high:.2f})')


def check_cell(rec: dict, check: str) -> str:
    """``ok``, ``**fail**`` or ``-`` (not run); ``ok (f64)`` for a masked
    check passed in float64, ``ok (scaled)`` for an export within
    :data:`ONNX_SCALED_RTOL` of the output's scale, ``ok (as unpruned)``
    for one as close as the unpruned model's export."""
    if check not in rec['checks']:
        return '-'
    if not rec['checks'][check]:
        return '**fail**'
    if check == 'masked' and 'masked_diff_float64' in rec:
        return 'ok (f64)'
    if check == 'onnx' and 'onnx_error_unpruned' in rec:
        return 'ok (as unpruned)'
    if check == 'onnx' and 'onnx_error' in rec:
        return 'ok (scaled)'
    return 'ok'


def markdown_table(records: Sequence[dict]) -> str:
    """The coverage table in markdown."""

    def mega(n, scale=1e6):
        return f'{n / scale:.2f}' if isinstance(n, (int, float)) else '-'

    head = ('| model | config | prunable groups | prunable channels | '
            'why frozen | params M | GFLOPs | latency speedup | '
            'comb / mmengine FLOPs | comb s | ' + ' | '.join(CHECKS) + ' |')
    lines = [head, '|' + '---|' * (10 + len(CHECKS))]
    for r in records:
        marks = ' | '.join(check_cell(r, c) for c in CHECKS)
        params = (f"{mega(r.get('params'))} -> {mega(r.get('params_pruned'))}"
                  if 'params_pruned' in r else '-')
        flops = (f"{mega(r.get('flops'), 1e9)} -> "
                 f"{mega(r.get('flops_pruned'), 1e9)}"
                 if 'flops_pruned' in r else '-')
        groups = (f"{r.get('prunable_groups')}/{r.get('groups')}"
                  if 'groups' in r else '-')
        share = (f"{100 * r['prunable_channels']:.0f}%"
                 if 'prunable_channels' in r else '-')
        ratio = (f"{r['flops_ratio']:.3f} / {r['flops_ratio_pruned']:.3f}"
                 if 'flops_ratio_pruned' in r else '-')
        lines.append(f"| {r.get('model', '?')} | `{r['config']}` | {groups} "
                     f'| {share} | {why_frozen(r)} | {params} | {flops} | '
                     f'{latency_cell(r)} | {ratio} | '
                     f"{r.get('comb_seconds', '-')} | {marks} |")
    return '\n'.join(lines)
