"""Overhead of CPDHook's importance gathering on a training iteration.

Times, on CPU, one training iteration (forward, loss, backward, SGD step)
of ResNet-18 and ResNet-50 without and with what CPDHook does at every
optimizer step, once 30% of the params are removed: the Hessian importance
gathered in the optimizer's step pre-hook and, in ``--mode mask``, the
removed channels kept dead (gradients zeroed before the step, weights and
momentum after it). In ``--mode physical`` (CPDHook's default) the removed
channels are cut out of the model, so the plain and the hooked iteration
both run the smaller model and the hook only gathers importance. Also
times one prune step (scores, global selection, new masks) in mask mode.

Baseline and hooked iterations alternate in blocks so that both see the
same machine load; the medians are reported.

Usage::

    python benchmarks/bench_hook_overhead.py --models resnet18 resnet50 \
        --batch 4 --size 128 --iters 12 [--mode physical|mask]
"""
import argparse
import statistics
import time

import torch
from torch import nn


def build(name: str, source: str) -> nn.Module:
    if source == 'mmpretrain':
        from mmpretrain.models import ResNet  # noqa: F401
        from mmengine.registry import MODELS, init_default_scope
        init_default_scope('mmpretrain')
        depth = int(name.replace('resnet', ''))
        return MODELS.build(
            dict(
                type='ImageClassifier',
                backbone=dict(type='ResNet', depth=depth),
                neck=dict(type='GlobalAveragePooling'),
                head=dict(
                    type='LinearClsHead',
                    num_classes=1000,
                    in_channels=512 if depth < 50 else 2048,
                    loss=dict(type='CrossEntropyLoss'))))
    import torchvision
    return getattr(torchvision.models, name)(num_classes=1000)


def forward(model, x):
    if hasattr(model, 'data_preprocessor'):
        return model(x, mode='tensor')
    return model(x)


def time_iters(model, opt, x, y, n):
    times = []
    for _ in range(n):
        start = time.perf_counter()
        loss = nn.functional.cross_entropy(forward(model, x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - start)
    return times


def bench(name, args):
    from mmcpd.apis.pruning import comb_model
    from mmcpd.prune.cost import CostModel
    from mmcpd.prune.surgery.dead import DeadUnits
    from mmcpd.prune.importance import HessianImportance
    from mmcpd.prune.selection import Guards, select_units

    torch.manual_seed(0)
    model = build(name, args.source).train()
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, 1000, (args.batch, ))
    model.eval()
    result = comb_model(model, x[:1])
    model.train()
    groups = result.prunable
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    imp = HessianImportance()
    imp.setup(model, groups)
    shapes = {k: v.shape for k, v in model.named_parameters()}
    cost = CostModel(shapes, result.groups, 'params')
    # a first prune step with random scores masks 30% of the params
    scores = {g.id: torch.rand(g.num_units, dtype=torch.float64)
              for g in groups}
    removed = select_units(groups, scores, cost, {}, 0.3, Guards())
    if args.mode == 'physical':
        from mmcpd.comb.remap import remap
        from mmcpd.prune.surgery.physical import prune_units
        prune_units(model, result, removed)
        result = remap(result, removed)
        groups = result.prunable
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        imp.setup(model, groups)
        cost = CostModel({k: v.shape for k, v in model.named_parameters()},
                         result.groups, 'params')
        removed = {}
    dead = DeadUnits(model, result.groups, removed)
    dead.zero_tensors()

    spent = []  # seconds inside the hooks, per step

    def pre(optimizer, a, k):
        start = time.perf_counter()
        dead.zero_grads()
        imp.accumulate()
        spent.append(time.perf_counter() - start)

    def post(optimizer, a, k):
        start = time.perf_counter()
        dead.zero_tensors()
        spent[-1] += time.perf_counter() - start

    time_iters(model, opt, x, y, args.warmup)  # warm-up, plain
    base, hooked = [], []
    for block in range(args.blocks):
        base += time_iters(model, opt, x, y, args.iters // args.blocks)
        handles = [opt.register_step_pre_hook(pre),
                   opt.register_step_post_hook(post)]
        hooked += time_iters(model, opt, x, y, args.iters // args.blocks)
        for h in handles:
            h.remove()
    # one prune step: scores, selection to 40%, new masks
    start = time.perf_counter()
    scores = imp.scores()
    new = select_units(groups, scores, cost, removed, 0.4, Guards())
    merged = {g: sorted(set(removed.get(g, [])) | set(new.get(g, [])))
              for g in set(removed) | set(new)}
    dead = DeadUnits(model, result.groups, merged)
    dead.zero_tensors()
    dead.zero_optimizer_state(opt)
    imp.reset()
    prune_s = time.perf_counter() - start
    b, h = statistics.median(base), statistics.median(hooked)
    added = statistics.median(spent)
    return dict(model=name, groups=len(groups), base_s=b, hooked_s=h,
                ratio=h / b, added_s=added, added_ratio=(b + added) / b,
                prune_step_s=prune_s)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='+',
                        default=['resnet18', 'resnet50'])
    parser.add_argument('--source', default='mmpretrain',
                        choices=['mmpretrain', 'torchvision'])
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--size', type=int, default=128)
    parser.add_argument('--iters', type=int, default=12)
    parser.add_argument('--blocks', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--mode', default='physical',
                        choices=['physical', 'mask'],
                        help="CPDHook's `shrink`: cut removed channels out "
                        '(default) or hold them at zero')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, '
          f'batch {args.batch}x3x{args.size}x{args.size}, {args.source}, '
          f'{args.mode} mode')
    # ratio: median hooked / median plain iteration (A/B, noisy on a
    # loaded machine); in-hook ratio: (plain + median time spent inside the
    # hooks) / plain, which measures the added work directly.
    print(f'{"model":10} {"groups":>6} {"plain s":>8} {"hooked s":>9} '
          f'{"ratio":>6} {"in-hook s":>9} {"in-hook ratio":>13} '
          f'{"prune step s":>12}')
    for name in args.models:
        r = bench(name, args)
        print(f'{r["model"]:10} {r["groups"]:6d} {r["base_s"]:8.3f} '
              f'{r["hooked_s"]:9.3f} {r["ratio"]:6.3f} '
              f'{r["added_s"]:9.3f} {r["added_ratio"]:13.3f} '
              f'{r["prune_step_s"]:12.3f}')


if __name__ == '__main__':
    main()
