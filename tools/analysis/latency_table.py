"""Measure (or load from the cache) the latency table of a config's model.

    python tools/analysis/latency_table.py CONFIG [--input-shape 1 3 224 224]
        [--threads N] [--provider cpu|cuda|tensorrt] [--points 6]
        [--budget 0.5] [--refresh] [--out table.json]

Each conv and linear layer is timed alone in onnxruntime at a grid of
(in, out) widths, layers of the same shape once; the table is cached per
machine in ``~/.cache/mmcpd/latency/`` (``mmcpd.deploy.latency_table``), so
``CPDHook(metric='latency')`` and ``mmcpd.prune_model(..., metric='latency')``
find it. Prints the machine, the time taken and the slowest layers.
"""
import argparse
import json
import time
import warnings

import torch


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file or pkg::path')
    parser.add_argument('--input-shape', type=int, nargs='+', default=None,
                        help='N C H W (default: the config\'s crop or 224)')
    parser.add_argument('--threads', type=int, default=None,
                        help='onnxruntime intra-op threads (default: the '
                        'cores this process may use)')
    parser.add_argument('--provider', default='cpu',
                        choices=['cpu', 'cuda', 'tensorrt'])
    parser.add_argument('--points', type=int, default=6,
                        help='grid widths per layer dim')
    parser.add_argument('--budget', type=float, default=0.5,
                        help='seconds of timing per layer shape')
    parser.add_argument('--refresh', action='store_true',
                        help='measure again, ignoring the cache')
    parser.add_argument('--out', help='also write the table here')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmcpd.apis import build_model_from_cfg
    from mmcpd.deploy.latency_table import latency_table
    from mmcpd.utils.config import input_shape, load_config

    cfg = load_config(args.config)
    model = build_model_from_cfg(cfg).eval()
    shape = args.input_shape or input_shape(cfg, None)
    if len(shape) != 4:
        raise ValueError('`--input-shape` should be N C H W, but got '
                         f'{shape}')
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        table = latency_table(model, torch.randn(*shape),
                              threads=args.threads, provider=args.provider,
                              points=args.points, budget_s=args.budget,
                              refresh=args.refresh, progress=True)
    seconds = time.perf_counter() - start
    machine = table['machine']
    shapes = {json.dumps({k: v for k, v in layer.items()
                          if k not in ('param', 'calls', 'ms')})
              for layer in table['layers']}
    print(f"{machine['cpu']} ({', '.join(machine['isa'])}), onnxruntime "
          f"{machine['onnxruntime']}, {machine['threads']} threads, "
          f"{machine['provider']}")
    print(f"{args.config} at {list(shape)}: {len(table['layers'])} layers, "
          f'{len(shapes)} shapes, in {seconds:.1f} s; model '
          f"{table['model_ms']:.2f} ms, layers "
          f"{table['model_ms'] - table['rest_ms']:.2f} ms, rest "
          f"{table['rest_ms']:.2f} ms")
    print(f"cache: {table['cache']}")
    load = table['load']
    print(f"measured at a load average of at most {load['max']:.1f} on "
          f"{load['cores']} cores" + (
              ': BUSY, these timings are not the idle machine\'s; run again '
              'when the machine is quiet (busy entries are measured again '
              'then)' if load['busy'] else ''))
    slowest = sorted(table['layers'], key=lambda x: -x['ms'][-1][-1])[:5]
    for layer in slowest:
        print(f"  {layer['param']}: {layer['ms'][-1][-1]:.3f} ms at "
              f"(in {layer['in']}, out {layer['out']}), "
              f"{layer['ms'][0][0]:.3f} ms at "
              f"({layer['grid_in'][0]}, {layer['grid_out'][0]})")
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(table, f, indent=1)
        print(f'written: {args.out}')


if __name__ == '__main__':
    main()
