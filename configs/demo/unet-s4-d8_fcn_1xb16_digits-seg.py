# Baseline of the offline demo for segmentation: MMSeg's UNet (as in its
# 64x64 DRIVE recipe, fcn_unet_s5-d16) with 4 stages of 16 to 128 channels
# and an FCN head, trained from scratch to label every pixel of 64x64
# canvases of handwritten digits (digit class or background, 11 classes).
# About 4.5 minutes of one CPU core (mIoU 54); see docs/demo.md.
_base_ = ['mmseg::_base_/default_runtime.py']

custom_imports = dict(imports=['mmcpd'], allow_failed_imports=False)
default_scope = 'mmseg'

# model settings
norm_cfg = dict(type='BN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    # pixel mean and std of the train canvases (grey, so the same 3 times)
    mean=[22.4, 22.4, 22.4],
    std=[56.8, 56.8, 56.8],
    bgr_to_rgb=False,
    size=(64, 64),
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='UNet',
        in_channels=3,
        base_channels=16,
        num_stages=4,
        strides=(1, 1, 1, 1),
        enc_num_convs=(2, 2, 2, 2),
        dec_num_convs=(2, 2, 2),
        downsamples=(True, True, True),
        enc_dilations=(1, 1, 1, 1),
        dec_dilations=(1, 1, 1),
        norm_cfg=norm_cfg,
        act_cfg=dict(type='ReLU'),
        upsample_cfg=dict(type='InterpConv'),
        norm_eval=False),
    decode_head=dict(
        type='FCNHead',
        in_channels=16,
        in_index=3,
        channels=16,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=11,
        norm_cfg=norm_cfg,
        align_corners=False,
        # digit pixels are 12% of a canvas, split over 10 classes: weigh the
        # background down, or training sits long in "all background"
        loss_decode=dict(
            type='CrossEntropyLoss',
            use_sigmoid=False,
            class_weight=[0.1] + [1.0] * 10,
            loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

# dataset settings: canvases are generated in memory, no file loading
train_pipeline = [dict(type='PackSegInputs')]
test_pipeline = [dict(type='PackSegInputs')]
train_dataloader = dict(
    batch_size=16,
    num_workers=0,
    dataset=dict(
        type='DigitsSegDataset',
        split='train',
        num_samples=1000,
        seed=0,
        pipeline=train_pipeline),
    sampler=dict(type='InfiniteSampler', shuffle=True))
val_dataloader = dict(
    batch_size=25,
    num_workers=0,
    dataset=dict(
        type='DigitsSegDataset',
        split='val',
        num_samples=200,
        seed=0,
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_dataloader = val_dataloader
test_evaluator = val_evaluator

# schedule
max_iters = 600
interval = 200
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.005, weight_decay=1e-4))
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
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(
        type='CheckpointHook',
        by_epoch=False,
        interval=interval,
        max_keep_ckpts=1,
        save_last=True),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
randomness = dict(seed=0)
