# Transfer benchmark (../transfer.py), classification, zoo width: the
# MMPretrain zoo MobileNetV2 (width 1.0, 32-channel stem, 1280-channel last
# conv, depthwise-separable inverted residuals) from random init -- no
# pretrained weights -- on 32x32 colour shapes (synth.Shapes16Dataset: 16
# classes on a coloured 1/f-noise background with an occluder, Gaussian
# noise std 0.1; 80 training images a class). The zoo's strides are kept
# (MobileNetV2 takes no stride setting): 32 px ends at 1x1 before the
# global pooling; 2,000 iterations (100 epochs) reach 91% top-1 (1,500:
# 84%), about 11 minutes of one CPU core. A real zoo architecture at its
# real width, next to the narrow ResNet-18/4 of the other tasks.
_base_ = ['mmpretrain::mobilenet_v2/mobilenet-v2_8xb32_in1k.py']

custom_imports = dict(imports=['mmcpd', 'synth'], allow_failed_imports=False)
default_scope = 'mmpretrain'
size = 32
data = dict(type='Shapes16Dataset', img_size=size, noise_std=0.1, seed=0)
# pixel mean and std of the 32 px train images
data_preprocessor = dict(
    num_classes=16, mean=[113.0] * 3, std=[66.0] * 3, to_rgb=False)
model = dict(
    backbone=dict(type='MobileNetV2', widen_factor=1.0),
    head=dict(num_classes=16, topk=(1, )))

# data: the images are made in memory, no file loading
train_pipeline = [
    dict(type='RandomCrop', crop_size=size, padding=4),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    _delete_=True,
    batch_size=64,
    num_workers=0,
    dataset=dict(
        split='train', num_samples=1280, pipeline=train_pipeline, **data),
    sampler=dict(type='InfiniteSampler', shuffle=True))
val_dataloader = dict(
    _delete_=True,
    batch_size=120,
    num_workers=0,
    dataset=dict(
        split='val', num_samples=480, pipeline=[dict(type='PackInputs')],
        **data),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

# schedule: iteration-based (transfer.py scales it to the task's
# baseline_iters), SGD with warm-up and cosine decay
max_iters = 2000
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
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=max_iters)
auto_scale_lr = dict(base_batch_size=64)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(
        type='CheckpointHook',
        by_epoch=False,
        interval=max_iters,
        max_keep_ckpts=1,
        save_last=True))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
