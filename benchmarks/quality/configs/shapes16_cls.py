# Transfer benchmark (../transfer.py), classification: the demo ResNet-18/4
# (ResNet_CIFAR, 16-channel first stage) on 16x16 colour shapes: 16 classes
# (filled and hollow primitives, bars, L, T, crosses) at random place, size
# and colour on a coloured 1/f-noise background, a random-coloured occluder
# a fifth of the side, Gaussian noise (std 0.1); 80 training images a
# class. More classes than the digits, colour, clutter.
_base_ = ['../../../configs/demo/resnet18-w16_1xb64_digits.py']

custom_imports = dict(imports=['mmcpd', 'synth'], allow_failed_imports=False)
size = 16
data = dict(type='Shapes16Dataset', img_size=size, noise_std=0.1, seed=0)
data_preprocessor = dict(num_classes=16, mean=[115.0] * 3, std=[68.0] * 3)
model = dict(head=dict(num_classes=16))
train_pipeline = [
    dict(type='RandomCrop', crop_size=size, padding=2),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    dataset=dict(
        _delete_=True, split='train', num_samples=1280,
        pipeline=train_pipeline, **data))
val_dataloader = dict(
    dataset=dict(
        _delete_=True, split='val', num_samples=480,
        pipeline=[dict(type='PackInputs')], **data))
test_dataloader = val_dataloader
max_iters = 300
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
