# Baseline of the offline demo for detection: MMDetection's RetinaNet with a
# ResNet-18 of a quarter of its width (16-64 channels, three stages, strides
# 4-16), an FPN of 32 channels and a two-conv head, trained from scratch to
# find the handwritten digits on 64x64 canvases (10 classes; boxes and masks
# in COCO json, generated once into `data/digits_det/` by
# `DigitsDetDataset`). See docs/demo.md.
_base_ = ['mmdet::_base_/default_runtime.py']

custom_imports = dict(imports=['mmcpd'], allow_failed_imports=False)
default_scope = 'mmdet'
data_root = 'data/digits_det'
canvas = 64

# model settings
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    type='RetinaNet',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        # pixel mean and std of the train canvases (grey, so the same 3 times)
        mean=[17.0, 17.0, 17.0],
        std=[50.0, 50.0, 50.0],
        bgr_to_rgb=False,
        pad_size_divisor=32),
    backbone=dict(
        type='ResNet',
        depth=18,
        base_channels=16,
        num_stages=3,
        strides=(1, 2, 2),
        dilations=(1, 1, 1),
        out_indices=(0, 1, 2),
        frozen_stages=-1,
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch'),
    neck=dict(
        type='FPN',
        in_channels=[16, 32, 64],
        out_channels=32,
        start_level=0,
        num_outs=3),
    bbox_head=dict(
        type='RetinaHead',
        num_classes=10,
        in_channels=32,
        stacked_convs=2,
        feat_channels=32,
        # digits of 16-24 px show ink boxes of about 6-24 px
        anchor_generator=dict(
            type='AnchorGenerator',
            octave_base_scale=3,
            scales_per_octave=2,
            ratios=[1.0, 1.5],
            strides=[4, 8, 16]),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[0.0, 0.0, 0.0, 0.0],
            target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(
            type='FocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.25,
            loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    train_cfg=dict(
        assigner=dict(
            type='MaxIoUAssigner',
            pos_iou_thr=0.5,
            neg_iou_thr=0.4,
            min_pos_iou=0,
            ignore_iof_thr=-1),
        sampler=dict(type='PseudoSampler'),
        allowed_border=-1,
        pos_weight=-1,
        debug=False),
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type='nms', iou_threshold=0.5),
        max_per_img=20))

# dataset settings: PNGs and COCO json, as MMDetection reads COCO. No flip
# (a flipped digit is another glyph); the fixed resize is a no-op on the
# 64x64 canvases and tells mmcpd the comb's input size
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(canvas, canvas), keep_ratio=False),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(canvas, canvas), keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]
train_dataloader = dict(
    batch_size=16,
    num_workers=0,
    dataset=dict(
        type='DigitsDetDataset',
        data_root=data_root,
        split='train',
        num_samples=400,
        canvas_size=canvas,
        filter_cfg=dict(filter_empty_gt=True),
        pipeline=train_pipeline),
    sampler=dict(type='InfiniteSampler', shuffle=True),
    batch_sampler=None)
val_dataloader = dict(
    batch_size=25,
    num_workers=0,
    dataset=dict(
        type='DigitsDetDataset',
        data_root=data_root,
        split='val',
        num_samples=100,
        canvas_size=canvas,
        test_mode=True,
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + '/val/annotations.json',
    metric='bbox')
test_dataloader = val_dataloader
test_evaluator = val_evaluator

# schedule
max_iters = 1000
interval = 250
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.004, weight_decay=1e-4),
    clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(
        type='CosineAnnealingLR',
        T_max=max_iters - 50,
        by_epoch=False,
        begin=50,
        end=max_iters),
]
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=interval)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

# runtime
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    checkpoint=dict(
        type='CheckpointHook',
        by_epoch=False,
        interval=interval,
        max_keep_ckpts=1,
        save_last=True))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
