"""Latency of a baseline and a pruned model in onnxruntime.

    python tools/benchmark_onnx.py \\
        --baseline CONFIG [CHECKPOINT] --pruned CONFIG CHECKPOINT \\
        [--shape 3 224 224] [--batch 1] [--warmup 50] [--runs 1000] \\
        [--threads N] [--provider cpu|cuda|tensorrt] [--work-dir DIR] \\
        [--forward my_pkg.module.fn]

    python tools/benchmark_onnx.py --baseline a.onnx --pruned b.onnx

Each model given as a config is built (pruned checkpoints are rebuilt from
their spec, DistillWrapper ones yield the student), exported, checked
against torch and timed; ``.onnx`` files are timed as they are. ``--pruned``
may be left out to time one model. A config's model is exported in tensor
mode (a detector's raw head outputs), or through ``--forward`` (the import
path of a ``forward(model, inputs)``), else its CPDHook's ``forward``.
Writes ``benchmark.json`` (system, CPU, threads, onnxruntime version,
provider, params, FLOPs, latency statistics, speedups) and ``latency.png``
(both distributions) to ``--work-dir`` and prints a table.
"""
import argparse
import os.path as osp
import sys

from mmcpd.utils.cli import add_onnx_options


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Compare the onnxruntime latency of two models')
    parser.add_argument(
        '--baseline',
        nargs='+',
        required=True,
        metavar='FILE',
        help='a .onnx file, or a config and optionally a checkpoint')
    parser.add_argument(
        '--pruned',
        nargs='+',
        metavar='FILE',
        help='a .onnx file, or a config and a checkpoint')
    parser.add_argument(
        '--shape',
        type=int,
        nargs='+',
        default=[3, 224, 224],
        help='input shape C H W (or H W for 3 channels) '
        '(default: %(default)s)')
    parser.add_argument(
        '--batch',
        type=int,
        default=1,
        help='batch size (default: %(default)s)')
    parser.add_argument(
        '--warmup',
        type=int,
        default=50,
        help='untimed runs (default: %(default)s)')
    parser.add_argument(
        '--runs',
        type=int,
        default=1000,
        help='timed runs (default: %(default)s)')
    parser.add_argument(
        '--threads',
        type=int,
        default=None,
        help='intra-op threads (default: all cores this process may use)')
    parser.add_argument(
        '--provider',
        default='cpu',
        choices=['cpu', 'cuda', 'tensorrt'],
        help='execution provider (default: %(default)s)')
    add_onnx_options(parser)
    parser.add_argument(
        '--forward',
        default=None,
        help='import path of a forward(model, inputs) to export the configs '
        "with instead of tensor mode (default: each config's CPDHook's "
        'forward, if any)')
    parser.add_argument(
        '--simplify',
        action=argparse.BooleanOptionalAction,
        default=False,
        help='time onnxslim-simplified graphs (default: off, see '
        'docs/deploy.md)')
    parser.add_argument(
        '--compare-slim',
        action='store_true',
        help='time each model with and without onnxslim')
    parser.add_argument(
        '--interleave',
        action='store_true',
        help='alternate the models run by run (fairer on a loaded machine)')
    parser.add_argument(
        '--spin',
        action='store_true',
        help="let onnxruntime's idle threads busy-wait between ops (its "
        'default; off here: spinning threads take the cores from the next '
        'run, and from the other model when interleaved)')
    parser.add_argument(
        '--work-dir',
        default='work_dirs/benchmark_onnx',
        help='where ONNX files, JSON and PNG go')
    parser.add_argument(
        '--json',
        default=None,
        help='JSON path (default: WORK_DIR/benchmark.json)')
    parser.add_argument(
        '--png',
        default=None,
        help='plot path (default: WORK_DIR/latency.png)')
    parser.add_argument(
        '--no-progress', action='store_true', help='no progress bars')
    return parser.parse_args(argv)


def input_shape(shape, batch: int):
    """``(N, C, H, W)`` from ``--shape`` (H W, or C H W) and ``--batch``."""
    if batch < 1:
        raise ValueError(f'`--batch` should be >= 1, but got {batch}')
    if len(shape) == 2:
        shape = [3] + list(shape)
    if len(shape) != 3:
        raise ValueError('`--shape` should be C H W or H W, but got '
                         f'{list(shape)}')
    return [batch] + list(shape)


def main(argv=None) -> int:
    args = parse_args(argv)
    from rich.console import Console
    from rich.markup import escape

    from mmcpd.apis.benchmark import ModelSource, benchmark_models
    from mmcpd.deploy import plot_latency, result_table, write_json
    from mmcpd.utils.checkpoint import CheckpointError
    from mmcpd.utils.module import import_callable

    # Not a terminal (a log file): wide enough for the table anyway.
    console = Console() if sys.stdout.isatty() else Console(width=120)
    try:
        shape = input_shape(args.shape, args.batch)
        forward = import_callable(args.forward, '--forward')
        sources = [ModelSource.from_args('baseline', args.baseline, forward)]
        if args.pruned:
            sources.append(
                ModelSource.from_args('pruned', args.pruned, forward))
        result = benchmark_models(
            sources,
            shape,
            args.work_dir,
            warmup=args.warmup,
            runs=args.runs,
            threads=args.threads,
            provider=args.provider,
            opset=args.opset,
            exporter=args.exporter,
            simplify=args.simplify,
            compare_slim=args.compare_slim,
            rtol=args.rtol,
            atol=args.atol,
            progress=not args.no_progress,
            interleave=args.interleave,
            spin=args.spin)
    except (ValueError, FileNotFoundError, CheckpointError, RuntimeError,
            ImportError) as err:
        console.print(f'[red]error:[/red] {escape(str(err))}', highlight=False)
        return 1
    json_path = write_json(
        result, args.json or osp.join(args.work_dir, 'benchmark.json'))
    png_path = plot_latency(result, args.png
                            or osp.join(args.work_dir, 'latency.png'))
    console.print(result_table(result))
    console.print(f'wrote {json_path} and {png_path}', highlight=False)
    return 0


if __name__ == '__main__':
    sys.exit(main())
