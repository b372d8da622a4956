"""Print the coupled channel groups of a config's model.

    python tools/analysis/comb.py CONFIG [--size 224] [--ignore PATTERN ...]
        [--members] [--json groups.json] [--no-verify]

CONFIG is a path or a package config (``mmpretrain::resnet/resnet50_8xb32_
in1k.py``). The model is built with random weights (nothing is downloaded),
traced once, and each prunable group is verified by removing one unit.
"""
import argparse
import sys
import time
import warnings

import torch


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file or pkg::path')
    parser.add_argument('--size', type=int, nargs='+', default=None,
                        help='input size H [W] (default: crop_size or 224)')
    parser.add_argument('--ignore', nargs='*', default=[],
                        help='module name patterns never to prune')
    parser.add_argument('--members', action='store_true',
                        help='print every member of every group')
    parser.add_argument('--json', help='write the groups as JSON here')
    parser.add_argument('--no-verify', action='store_true',
                        help='skip verifying groups by real removal')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import mmcpd
    from mmcpd.apis import build_model_from_cfg
    from mmcpd.utils.config import input_shape, load_config
    from rich.console import Console
    from rich.table import Table

    cfg = load_config(args.config)
    model = build_model_from_cfg(cfg)
    size = args.size if args.size is None or len(args.size) > 1 else \
        args.size[0]
    x = torch.randn(*input_shape(cfg, size))
    start = time.perf_counter()
    with warnings.catch_warnings(record=True):
        warnings.simplefilter('always')
        result = mmcpd.comb_model(
            model, x, ignore=args.ignore, verify=not args.no_verify)
    seconds = time.perf_counter() - start

    console = Console()
    table = Table(title=f'{args.config}: coupled groups '
                  f'(input {tuple(x.shape)}, {seconds:.2f}s)')
    for col in ('id', 'root', 'units', 'channels', 'members', 'status'):
        table.add_column(col)
    for g in result.groups:
        status = 'prunable' if g.prunable else (g.frozen or 'one unit')
        table.add_row(str(g.id), g.root, str(g.num_units), str(g.channels),
                      str(len(g.members)), status)
    console.print(table)
    if args.members:
        for g in result.groups:
            console.print(str(g), highlight=False)
    prunable = result.prunable
    console.print(f'{len(prunable)} of {len(result.groups)} groups '
                  f'prunable ({sum(g.channels for g in prunable)} channels)')
    if result.warnings:
        console.print('[bold]frozen, and why:[/bold]')
        for w in result.warnings:
            console.print(f'  {w}', highlight=False)
    if result.unexecuted:
        console.print('modules the traced forward never ran (left as they '
                      'are): ' + ', '.join(result.unexecuted))
    if args.json:
        with open(args.json, 'w') as f:
            f.write(result.to_json())
    return result


if __name__ == '__main__':
    main(sys.argv[1:])
