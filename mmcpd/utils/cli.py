"""Command-line options that several of mmcpd's tools share."""
import argparse
import os


def add_onnx_options(parser: argparse.ArgumentParser) -> None:
    """``--opset``, ``--exporter``, ``--rtol`` and ``--atol``: how a model
    is exported and how closely onnxruntime must match torch (the defaults
    of :func:`mmcpd.deploy.export_onnx` and :func:`~mmcpd.deploy.verify_onnx`).
    """
    parser.add_argument(
        '--opset',
        type=int,
        default=17,
        help='ONNX opset (default: %(default)s)')
    parser.add_argument(
        '--exporter',
        choices=['legacy', 'dynamo'],
        default='legacy',
        help='torch exporter (default: %(default)s)')
    parser.add_argument(
        '--rtol',
        type=float,
        default=1e-3,
        help='relative tolerance of the ONNX check (default: %(default)s)')
    parser.add_argument(
        '--atol',
        type=float,
        default=1e-4,
        help='absolute tolerance of the ONNX check (default: %(default)s)')


def add_launcher_options(parser: argparse.ArgumentParser) -> None:
    """``--launcher`` and ``--local-rank``, as OpenMMLab's tools take them."""
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes `--local-rank` (torch >= 2.0) or
    # `--local_rank`; torchrun sets the LOCAL_RANK variable instead.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_launched(parser: argparse.ArgumentParser,
                   argv=None) -> argparse.Namespace:
    """Parse ``argv``; export ``--local-rank`` as ``LOCAL_RANK`` unless the
    launcher (torchrun) set it."""
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args
