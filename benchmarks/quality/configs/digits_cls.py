# Quality benchmark, classification: the demo ResNet-18/4
# (configs/demo/resnet18-w16_1xb64_digits.py) on harder digits: 16x16
# images, 60 training images per class, Gaussian noise (std 25% of full
# intensity) and a mid-grey square over a third of each image. Trained
# from scratch; baseline top-1 between 60% and 90% (benchmarks/quality/).
_base_ = ['../../../configs/demo/resnet18-w16_1xb64_digits.py']

size = 16
hard = dict(img_size=size, noise_std=0.25, occlusion=0.35)
data_preprocessor = dict(mean=[90.0] * 3, std=[82.0] * 3)
train_pipeline = [
    dict(type='RandomCrop', crop_size=size, padding=2),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    dataset=dict(max_per_class=60, pipeline=train_pipeline, **hard))
val_dataloader = dict(dataset=dict(**hard))
test_dataloader = val_dataloader
max_iters = 400
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(
        type='CosineAnnealingLR',
        T_max=max_iters - 50,
        by_epoch=False,
        begin=50,
        end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
