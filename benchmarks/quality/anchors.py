"""Anchors of the transfer benchmark: other libraries' structured pruning,
one-shot before the same fine-tuning as mmcpd's arms.

:class:`AnchorPruneHook` prunes the loaded baseline in ``before_train``
(after mmengine loaded ``load_from``) with

* ``tp_magnitude`` / ``tp_taylor``: Torch-Pruning 1.6.1's ``MetaPruner``
  with ``MagnitudeImportance`` (L2) or ``TaylorImportance`` (first-order,
  gradients of the task loss on a few training batches), local (uniform)
  pruning in 0.6% steps until its own MACs count is at most 1/speedup of
  the baseline's; the classifier / segmentation logits layer kept;
* ``fastnas``: ModelOpt 0.47 FastNAS
  (``mtp.prune(model, mode=[('fastnas', cfg)], constraints={'flops':
  '25%'}, dummy_input=..., config={'data_loader', 'score_func',
  'checkpoint'})``) with ``channel_divisor`` / ``feature_divisor`` lowered
  from 32 to 8; its score: top-1 (or pixel mIoU) on held training batches;

then points the optimizer at the pruned parameters (no state yet: the hook
runs before the first step). The fine-tuning that follows is the task's
CPD config with the same iterations, learning rate and schedule as mmcpd's
arms, without distillation. The hook keeps the metrics of the last
validation (``anchor_metrics.json``) and the trained model, pickled
(``anchor_model.pth``), in the work dir.

These libraries are benchmark-only: ``requirements-anchors.txt``,
``install_anchors.sh``.
"""
import json
import os.path as osp
import time
from typing import List

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from torch import nn


class _Tensor(nn.Module):
    """The model in tensor mode, for the pruners' tracers."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x, mode='tensor')


def _last_layer(model: nn.Module) -> nn.Module:
    if hasattr(model, 'decode_head'):
        return model.decode_head.conv_seg
    return model.head.fc


def _loss(model: nn.Module, data: dict) -> torch.Tensor:
    losses = model(**data, mode='loss')
    return sum(v for k, v in losses.items() if 'loss' in k)


def _score(model: nn.Module, batches: List[dict], seg: bool) -> float:
    """Top-1 (%) or mIoU over present classes (%) on ``batches``."""
    correct = total = 0
    inter = union = None
    with torch.no_grad():
        for data in batches:
            out = model(data['inputs'])
            if not seg:
                labels = torch.cat(
                    [s.gt_label for s in data['data_samples']])
                correct += (out.argmax(1) == labels).sum().item()
                total += labels.numel()
                continue
            gt = torch.stack(
                [s.gt_sem_seg.data[0] for s in data['data_samples']])
            if out.shape[-2:] != gt.shape[-2:]:
                out = nn.functional.interpolate(
                    out, gt.shape[-2:], mode='bilinear', align_corners=False)
            pred = out.argmax(1)
            n = out.shape[1]
            if inter is None:
                inter, union = torch.zeros(n), torch.zeros(n)
            for c in range(n):
                p, g = pred == c, gt == c
                inter[c] += (p & g).sum()
                union[c] += (p | g).sum()
    if not seg:
        return 100.0 * correct / max(total, 1)
    present = union > 0
    return float(100.0 * (inter[present] / union[present]).mean())


def tp_prune(model: nn.Module, method: str, speedup: float, shape,
             batches: List[dict]) -> dict:
    """Torch-Pruning to <= 1/speedup of the MACs (its own count)."""
    import torch_pruning as tp
    wrap = _Tensor(model)
    example = torch.zeros(shape)
    imp = (tp.importance.TaylorImportance()
           if method == 'tp_taylor' else tp.importance.MagnitudeImportance(
               p=2))
    steps = 150
    pruner = tp.pruner.MetaPruner(
        wrap,
        example,
        importance=imp,
        pruning_ratio=0.9,
        iterative_steps=steps,
        ignored_layers=[_last_layer(model)],
        global_pruning=False)
    model.eval()
    base, _ = tp.utils.count_ops_and_params(wrap, example)
    macs = base
    done = 0
    for step in range(steps):
        if method == 'tp_taylor':
            model.train()
            model.zero_grad()
            for data in batches:
                _loss(model, data).backward()
            model.eval()
        pruner.step()
        done = step + 1
        macs, _ = tp.utils.count_ops_and_params(wrap, example)
        if macs <= base / speedup:
            break
    model.zero_grad(set_to_none=True)
    return dict(tp_macs_base=int(base), tp_macs=int(macs), tp_steps=done,
                tp_ratio=done * 0.9 / steps)


def fastnas_prune(model: nn.Module, speedup: float, shape,
                  batches: List[dict], seg: bool, checkpoint: str) -> dict:
    """ModelOpt FastNAS to <= 1/speedup of the FLOPs, divisors 8."""
    import modelopt.torch.prune as mtp
    wrap = _Tensor(model)
    rules = {}
    for name in ('nn.Conv2d', 'nn.ConvTranspose2d'):
        rules[name] = {'*': {'channel_divisor': 8}}
    for name in ('nn.Linear', 'nn.BatchNorm2d', 'nn.SyncBatchNorm',
                 'nn.LayerNorm'):
        rules[name] = {'*': {'feature_divisor': 8}}
    calib = [(d['inputs'], ) for d in batches]
    model.eval()
    pruned, state = mtp.prune(
        wrap,
        mode=[('fastnas', rules)],
        constraints={'flops': f'{100.0 / speedup:g}%'},
        dummy_input=torch.zeros(shape),
        config=dict(
            data_loader=calib,
            score_func=lambda m: _score(m, batches, seg),
            checkpoint=checkpoint))
    # mtp.prune exports the best subnet in place (plain modules)
    inner = pruned.model
    # the pruned submodules back into the runner's model (the same
    # objects where ModelOpt exported in place)
    for name, child in inner.named_children():
        setattr(model, name, child)
    return dict(fastnas_constraint=f'{100.0 / speedup:g}%')


@HOOKS.register_module()
class AnchorPruneHook(Hook):
    """Prune the runner's model once before training with an anchor.

    Args:
        method (str): ``tp_magnitude``, ``tp_taylor`` or ``fastnas``.
        speedup (float): FLOPs reduction asked for (4: a quarter left).
        shape (tuple): Input shape, batch first (the pruners' example).
        calib_batches (int): Training batches for Taylor gradients,
            FastNAS's BN calibration and score.
    """
    priority = 'VERY_HIGH'

    def __init__(self, method: str, speedup: float, shape,
                 calib_batches: int = 4):
        self.method = method
        self.speedup = speedup
        self.shape = tuple(shape)
        self.calib_batches = calib_batches
        self.info = {}

    def before_train(self, runner) -> None:
        model = runner.model
        seg = hasattr(model, 'decode_head')
        batches = []
        # the loop's own iterator: a second iterator over mmengine's
        # InfiniteSampler closes the generator the two share when it is
        # collected, and training then stops
        loader = runner.train_loop.dataloader_iterator
        for _ in range(self.calib_batches):
            batches.append(model.data_preprocessor(next(loader), True))
        start = time.perf_counter()
        if self.method.startswith('tp_'):
            info = tp_prune(model, self.method, self.speedup, self.shape,
                            batches)
        elif self.method == 'fastnas':
            info = fastnas_prune(model, self.speedup, self.shape, batches,
                                 seg, osp.join(runner.work_dir,
                                               'fastnas_search.pth'))
        else:
            raise ValueError(f'unknown anchor {self.method!r}')
        info['prune_s'] = time.perf_counter() - start
        self.info = info
        model.train()
        optimizer = runner.optim_wrapper.optimizer
        if len(optimizer.param_groups) != 1:
            raise RuntimeError('AnchorPruneHook expects one param group')
        optimizer.param_groups[0]['params'] = [
            p for p in model.parameters() if p.requires_grad
        ]
        optimizer.state.clear()
        runner.logger.info(f'anchor {self.method}: {info}')

    def after_val_epoch(self, runner, metrics=None) -> None:
        with open(osp.join(runner.work_dir, 'anchor_metrics.json'),
                  'w') as f:
            # MMSeg's IoUMetric gives numpy floats
            json.dump(dict(metrics=metrics or {}, **self.info), f,
                      default=float)

    def after_train(self, runner) -> None:
        torch.save(runner.model, osp.join(runner.work_dir,
                                          'anchor_model.pth'))
