# Transfer benchmark (../transfer.py), classification: the demo ResNet-18/4
# (ResNet_CIFAR, 16-channel first stage) on 16x16 colour procedural
# textures, 8 families at random frequency, phase, colours and contrast
# (0.4-1) with Gaussian noise (std 0.2 of full intensity); 80 training
# images a class. Other image statistics than the digits: colour, periodic
# and 1/f spectra, no object.
_base_ = ['../../../configs/demo/resnet18-w16_1xb64_digits.py']

custom_imports = dict(imports=['mmcpd', 'synth'], allow_failed_imports=False)
size = 16
data = dict(type='TexturesDataset', img_size=size, noise_std=0.2, seed=0)
data_preprocessor = dict(num_classes=8, mean=[128.5] * 3, std=[64.0] * 3)
model = dict(head=dict(num_classes=8))
train_pipeline = [
    dict(type='RandomCrop', crop_size=size, padding=2),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    dataset=dict(
        _delete_=True, split='train', num_samples=640,
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
