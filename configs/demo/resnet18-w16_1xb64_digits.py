# Baseline of the offline demo: an MMPretrain ResNet-18 for 32x32 images
# (ResNet_CIFAR: 3x3 stem, no max pooling), at a quarter of the usual width
# (16 channels in the first stage instead of 64), trained from scratch on
# scikit-learn's handwritten digits (1,437 train / 360 val images).
# About 2 minutes of one CPU core (top-1 99.4%); see docs/demo.md.
_base_ = ['mmpretrain::_base_/default_runtime.py']

custom_imports = dict(imports=['mmcpd'], allow_failed_imports=False)
default_scope = 'mmpretrain'

# model settings
data_preprocessor = dict(
    num_classes=10,
    # pixel mean and std of the train images (grey, so the same 3 times)
    mean=[77.7, 77.7, 77.7],
    std=[82.5, 82.5, 82.5],
    to_rgb=False)
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ResNet_CIFAR',
        depth=18,
        stem_channels=16,
        base_channels=16,
        num_stages=4,
        out_indices=(3, ),
        style='pytorch'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=10,
        in_channels=128,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, )))

# dataset settings: the images live in memory, no file loading
train_pipeline = [
    dict(type='RandomCrop', crop_size=32, padding=2),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=64,
    num_workers=0,
    dataset=dict(
        type='DigitsDataset',
        split='train',
        img_size=32,
        seed=0,
        pipeline=train_pipeline),
    sampler=dict(type='InfiniteSampler', shuffle=True))
val_dataloader = dict(
    batch_size=120,
    num_workers=0,
    dataset=dict(
        type='DigitsDataset',
        split='val',
        img_size=32,
        seed=0,
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

# schedule: 300 iterations of 64 images (about 13 epochs)
max_iters = 300
interval = 100
optim_wrapper = dict(
    optimizer=dict(
        type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True))
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
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=64)

# runtime
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(
        type='CheckpointHook',
        by_epoch=False,
        interval=interval,
        max_keep_ckpts=1,
        save_last=True))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
