"""Export a (pruned) MMPretrain/MMSeg/MMDetection model to ONNX and check it.

    python tools/export_onnx.py CONFIG CHECKPOINT --shape 1 3 224 224 \\
        --out model.onnx [--opset 17] [--dynamic-batch] [--rtol 1e-3] \\
        [--atol 1e-4] [--exporter legacy] [--simplify] \\
        [--forward my_pkg.module.fn]

CHECKPOINT may be a plain, a pruned (mmcpd writes the spec into it) or a
DistillWrapper checkpoint (the student is exported), or ``none`` for random
weights. The file is checked with onnx's checker, then run in onnxruntime
on the same random input as torch; the tool exits with status 1 and prints
the max absolute and relative difference when they differ beyond the
tolerance. What is exported is the model's tensor mode (a detector's raw
head outputs), or ``--forward``, the import path of a ``forward(model,
inputs)``; without it, the ``forward`` of the config's CPDHook if it has
one.
"""
import argparse
import sys

import torch

from mmcpd.utils.cli import add_onnx_options


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Export a model to ONNX and verify it against torch')
    parser.add_argument('config', help='config file of the model')
    parser.add_argument(
        'checkpoint', help='checkpoint file, or "none" for random weights')
    parser.add_argument(
        '--shape',
        type=int,
        nargs=4,
        default=[1, 3, 224, 224],
        metavar=('N', 'C', 'H', 'W'),
        help='input shape (default: %(default)s)')
    parser.add_argument('--out', required=True, help='the .onnx file')
    add_onnx_options(parser)
    parser.add_argument(
        '--dynamic-batch',
        action='store_true',
        help='make the batch axis dynamic')
    parser.add_argument(
        '--resize-to-input',
        action='store_true',
        help='resize segmentation logits to the input size')
    parser.add_argument(
        '--simplify',
        action='store_true',
        help='also simplify with onnxslim (and verify)')
    parser.add_argument(
        '--forward',
        default=None,
        help="import path of a forward(model, inputs) to export instead of "
        "tensor mode (default: the config's CPDHook's forward, if any)")
    parser.add_argument(
        '--seed', type=int, default=0, help='seed of the random check input')
    return parser.parse_args(argv)


def _verify(path, model, inputs, args, what: str, forward) -> None:
    from mmcpd.deploy import verify_onnx

    report = verify_onnx(
        path,
        model,
        inputs,
        rtol=args.rtol,
        atol=args.atol,
        resize_to_input=args.resize_to_input,
        forward=forward)
    diffs = ', '.join(f"`{k}` max abs {v['max_abs']:.2e}, max rel "
                      f"{v['max_rel']:.2e}" for k, v in report.items())
    print(f'{path} ({what}, {args.exporter} exporter, opset {args.opset}) '
          f'matches torch: {diffs}')


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmcpd.apis import init_model
    from mmcpd.apis.benchmark import config_forward
    from mmcpd.deploy import ONNXMismatchError, export_onnx, simplify_onnx
    from mmcpd.utils.config import load_config

    checkpoint = None if args.checkpoint.lower() == 'none' else \
        args.checkpoint
    cfg = load_config(args.config)
    forward = config_forward(cfg, args.forward)
    model = init_model(cfg, checkpoint, device='cpu')
    inputs = torch.randn(
        *args.shape, generator=torch.Generator().manual_seed(args.seed))
    path = export_onnx(
        model,
        inputs,
        args.out,
        opset=args.opset,
        dynamic_batch=args.dynamic_batch,
        exporter=args.exporter,
        resize_to_input=args.resize_to_input,
        forward=forward)
    try:
        _verify(path, model, inputs, args, 'exported', forward)
        if args.dynamic_batch:
            more = torch.cat([inputs, inputs.flip(0)])  # another batch size
            _verify(path, model, more, args, f'batch {len(more)}', forward)
        if args.simplify:
            _verify(
                simplify_onnx(path, path), model, inputs, args,
                'onnxslim-simplified', forward)
    except ONNXMismatchError as err:
        print(f'error: {path}: {err}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
