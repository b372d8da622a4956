"""How long combing takes: trace + resolve, and verification apart.

    python benchmarks/bench_comb.py [CONFIG ...] [--size 224] [--repeat 3]

Defaults to ResNet-50 and DeiT-S at 224 x 224 (the issue's budget: combing
under 3 seconds on 2 cores). Reports the best of ``--repeat`` runs of the
trace + resolve step (``mmcpd.comb_model(..., verify=False)``), one
verification and one plain forward of the model for scale.
"""
import argparse
import time
import warnings

import torch

DEFAULT = [
    'mmpretrain::resnet/resnet50_8xb32_in1k.py',
    'mmpretrain::deit/deit-small_4xb256_in1k.py',
]


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('configs', nargs='*', default=DEFAULT)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--repeat', type=int, default=3)
    args = parser.parse_args()

    import mmcpd
    from mmcpd.apis import build_model_from_cfg
    from mmcpd.prune.surgery.verify import verify_groups
    from mmcpd.utils.config import load_config
    warnings.simplefilter('ignore')
    print(f'torch threads: {torch.get_num_threads()}')
    print('| model | input | forward s | comb s (trace+resolve) | '
          'verify s | groups | prunable |')
    print('|---|---|---|---|---|---|---|')
    for config in args.configs:
        model = build_model_from_cfg(load_config(config))
        x = torch.randn(1, 3, args.size, args.size)
        with torch.no_grad():
            fwd, _ = best_of(lambda: model(x, mode='tensor'), args.repeat)
        t_comb, result = best_of(
            lambda: mmcpd.comb_model(model, x, verify=False), args.repeat)
        start = time.perf_counter()
        verified = verify_groups(model, result, x)
        t_verify = time.perf_counter() - start
        print(f'| {config} | {args.size} | {fwd:.2f} | {t_comb:.2f} | '
              f'{t_verify:.2f} | {len(result.groups)} | '
              f'{len(verified.prunable)} |')


if __name__ == '__main__':
    main()
