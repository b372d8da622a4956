"""Train a zoo model a few iterations with CPDHook and check what it deploys.

:func:`check_hook_run` is the end-to-end oracle of "what the hook trains is
what gets deployed": the config's model, every parameter and buffer
randomised, trains on random images with the config's own optimizer
(gradient clipping and parameter-wise settings included) under a real
mmengine ``Runner`` and ``CPDHook``; after a prune step and more masked
iterations, the deploy checkpoint that the hook writes must compute what
the masked student computes.
"""
import copy
import tempfile
from typing import Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from mmcpd.comb.cuda_only_ops import cuda_only_ops
from mmcpd.comb.tensor_mode import is_mmdet_detector
from mmcpd.prune.surgery.verify import (masked_output, outputs_match,
                                        same_random)
from mmcpd.testing.random_init import random_model
from mmcpd.utils.config import input_shape, load_config


class RandomSamples(Dataset):
    """Random uint8 images with random labels for a classifier, a
    segmentor or a detector, in the form their data preprocessors take.

    A detector's sample (``task='detection'``) carries 1-3 random boxes
    with random labels, their masks (``masks=True``: filled boxes) and a
    semantic map of ``semantic`` classes (panoptic models, semantic
    branches); its metainfo is
    that of an unscaled, unpadded image, as mmdet's pipeline writes it.
    """

    def __init__(self, size, num_classes: int, segmentation: bool = False,
                 length: int = 8, task: Optional[str] = None,
                 masks: bool = False, semantic: int = 0):
        self.size = tuple(size)
        self.num_classes = num_classes
        self.task = task or ('segmentation' if segmentation else
                             'classification')
        self.segmentation = self.task == 'segmentation'
        self.masks = masks
        self.semantic = semantic
        self.length = length
        self.metainfo = dict(
            classes=tuple(str(i) for i in range(num_classes)))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        gen = torch.Generator().manual_seed(i)
        h, w = self.size
        img = torch.randint(0, 256, (3, h, w), generator=gen,
                            dtype=torch.uint8)
        if self.task == 'detection':
            return dict(inputs=img, data_samples=self._det_sample(gen))
        if self.segmentation:
            from mmengine.structures import PixelData
            from mmseg.structures import SegDataSample
            label = torch.randint(0, self.num_classes, (1, h, w),
                                  generator=gen)
            sample = SegDataSample(gt_sem_seg=PixelData(data=label))
            sample.set_metainfo(dict(img_shape=(h, w), ori_shape=(h, w),
                                     pad_shape=(h, w)))
        else:
            from mmpretrain.structures import DataSample
            sample = DataSample().set_gt_label(i % self.num_classes)
        return dict(inputs=img, data_samples=sample)

    def _det_sample(self, gen: torch.Generator):
        from mmdet.structures import DetDataSample
        from mmdet.structures.bbox import HorizontalBoxes
        from mmdet.structures.mask import BitmapMasks
        from mmengine.structures import InstanceData, PixelData
        h, w = self.size
        n = int(torch.randint(1, 4, (), generator=gen))
        # corners at least an eighth of the image apart
        x1 = torch.rand(n, generator=gen) * w * 0.6
        y1 = torch.rand(n, generator=gen) * h * 0.6
        bw = (0.125 + torch.rand(n, generator=gen) * 0.275) * w
        bh = (0.125 + torch.rand(n, generator=gen) * 0.275) * h
        boxes = torch.stack([x1, y1, x1 + bw, y1 + bh], 1)
        instances = InstanceData(
            bboxes=HorizontalBoxes(boxes),
            labels=torch.randint(0, self.num_classes, (n, ), generator=gen))
        sample = DetDataSample(gt_instances=instances)
        if self.masks:
            masks = np.zeros((n, h, w), dtype=np.uint8)
            for k, (a, b, c, d) in enumerate(boxes.round().long().tolist()):
                masks[k, b:d, a:c] = 1
            instances.masks = BitmapMasks(masks, h, w)
        if self.semantic:
            seg = torch.randint(0, self.semantic, (1, h, w),
                                generator=gen)
            sample.gt_sem_seg = PixelData(sem_seg=seg)
        sample.gt_ignore_flags = torch.zeros(n, dtype=torch.bool)
        instances.ignore_flags = sample.gt_ignore_flags
        sample.set_metainfo(dict(img_shape=(h, w), ori_shape=(h, w),
                                 scale_factor=(1.0, 1.0), flip=False,
                                 flip_direction=None, img_id=0,
                                 img_path=''))
        return sample


def _heads(model_cfg) -> list:
    """The head configs of a model: a classifier's or segmentor's head, a
    detector's (box, RoI, mask, panoptic) heads."""
    heads = []
    for key in ('decode_head', 'head', 'bbox_head', 'panoptic_head',
                'semantic_head', 'roi_head', 'rpn_head'):
        head = model_cfg.get(key)
        for h in (head if isinstance(head, (list, tuple)) else [head]):
            if isinstance(h, dict):
                heads.append(h)
                for inner in ('bbox_head', 'mask_head'):
                    sub = h.get(inner)
                    heads += [s for s in (sub if isinstance(
                        sub, (list, tuple)) else [sub]) if isinstance(
                            s, dict)]
    return heads


def _num_classes(model_cfg) -> int:
    """The classes of the first head that names them (a panoptic head's
    thing classes: the instances' labels)."""
    for head in _heads(model_cfg):
        things = head.get('num_things_classes')
        if things:
            return int(things)
        if head.get('num_classes'):
            return int(head['num_classes'])
    return 4


def _semantic_classes(model_cfg) -> int:
    """The classes of a detector's semantic map (a panoptic or semantic
    head), 0 where it has none."""
    for head in _heads(model_cfg):
        stuff = head.get('num_stuff_classes')
        if stuff:
            return int(head.get('num_things_classes', 0)) + int(stuff)
    roi = model_cfg.get('roi_head') or {}
    for head in (model_cfg.get('semantic_head'), roi.get('semantic_head')):
        if isinstance(head, dict):
            return int(head.get('num_classes', 0))
    return 0


def _optim_wrapper(cfg) -> dict:
    """The config's optimizer wrapper, in fp32, with a small step."""
    wrapper = copy.deepcopy(dict(cfg.get('optim_wrapper') or {}))
    wrapper.pop('loss_scale', None)
    wrapper.pop('dtype', None)
    wrapper.pop('accumulative_counts', None)
    wrapper['type'] = 'OptimWrapper'
    optimizer = dict(wrapper.get('optimizer') or dict(type='SGD'))
    optimizer['lr'] = min(float(optimizer.get('lr', 1e-3)), 1e-3)
    wrapper['optimizer'] = optimizer
    return wrapper


@cuda_only_ops(import_mmcv=True)  # mmcv ops without a CPU kernel
def check_hook_run(config,
                   size=None,
                   iters: int = 4,
                   target: float = 0.3,
                   seed: int = 0,
                   work_dir: Optional[str] = None,
                   rtol: float = 1e-4) -> dict:
    """Train with CPDHook, then compare the deploy model with the masked one.

    Args:
        config (str | Config): The model's config (``pkg::path`` works).
        size (int | tuple, optional): Input size; see
            :func:`mmcpd.utils.config.input_shape`.
        iters (int): Training iterations; one prune step at half of them.
            Defaults to 4.
        target (float): FLOPs fraction the prune step removes. Defaults to
            0.3.
        seed (int): Seed of the randomised weights and data. Defaults to 0.
        work_dir (str, optional): The runner's work dir; a temporary one by
            default.
        rtol (float): Largest relative difference allowed. Defaults to 1e-4.

    Returns:
        dict: ``ok``, ``diff`` (largest relative difference), ``sparsity``
        (FLOPs removed), ``removed_units``, ``failed_verification`` (groups
        the hook's comb froze because pruning them for real broke the
        model).
    """
    from mmengine.runner import Runner

    from mmcpd.engine.hooks import CPDHook
    from mmcpd.prune.spec import PrunedSpec, apply_spec

    cfg = load_config(config)
    shape = input_shape(cfg, size)
    torch.manual_seed(seed)
    model = random_model(cfg, seed)
    model._is_init = True  # keep the randomised weights through train()
    fresh = copy.deepcopy(model)
    segmentation = hasattr(model, 'decode_head')
    if segmentation and getattr(model.data_preprocessor, 'size',
                                None) is not None:
        model.data_preprocessor.size = tuple(shape[2:])
    if is_mmdet_detector(model):
        # batch augments pad (large-scale jitter: to 1024) or resize the
        # batch; the check trains at the size it combs
        model.data_preprocessor.batch_augments = None
        dataset = RandomSamples(shape[2:], _num_classes(cfg.model),
                                task='detection', masks=True,
                                semantic=_semantic_classes(cfg.model))
    else:
        dataset = RandomSamples(shape[2:], _num_classes(cfg.model),
                                segmentation)
    hook = dict(type=CPDHook, interval=max(iters // 2, 1), target=target,
                metric='flops', num_steps=1, importance='taylor',
                input_shape=shape, plot_file=None,
                # the oracle: the deploy model computes what masks do
                shrink='mask')
    work_dir = work_dir or tempfile.mkdtemp(prefix='mmcpd_hook_check_')
    runner = Runner(
        model=model,
        work_dir=work_dir,
        train_dataloader=dict(
            dataset=dataset, batch_size=2,
            sampler=dict(type='DefaultSampler', shuffle=True, seed=seed),
            collate_fn=dict(type='pseudo_collate')),
        optim_wrapper=_optim_wrapper(cfg),
        train_cfg=dict(by_epoch=False, max_iters=iters),
        default_hooks=dict(checkpoint=None, logger=None),
        custom_hooks=[hook],
        randomness=dict(seed=seed),
        default_scope=cfg.get('default_scope'),
        log_level='WARNING')
    runner.train()
    cpd = next(h for h in runner.hooks if isinstance(h, CPDHook))
    ckpt = torch.load(f'{work_dir}/{cpd.deploy_file}', weights_only=True)
    deployed = apply_spec(fresh, PrunedSpec.from_dict(ckpt['pruned_spec']))
    deployed.load_state_dict(ckpt['state_dict'])
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    student = cpd.student.eval()
    deployed.eval()
    from mmcpd.comb.trace import default_forward
    expected = masked_output(student, cpd.session.comb, cpd.session.removed, x)
    with torch.no_grad(), same_random():  # the same random draws
        got = default_forward(deployed, x)
    ok, diff = outputs_match(expected, got, rtol)
    return dict(
        ok=bool(ok),
        diff=float(diff),
        sparsity=float(cpd.session.history[-1]['sparsity']),
        removed_units=sum(len(v) for v in cpd.session.removed.values()),
        failed_verification=sum(
            'failed verification' in (g.frozen or '')
            for g in cpd.session.comb.groups))
