# Quality benchmark, segmentation: the demo UNet
# (configs/demo/unet-s4-d8_fcn_1xb16_digits-seg.py) on harder canvases:
# 32x32 with 1-3 digits of 12-18 pixels drawn from 60 images per class,
# Gaussian noise (std 15% of full intensity) and a mid-grey square over a
# quarter of each canvas. Trained from scratch; baseline mIoU between 60
# and 90 (benchmarks/quality/).
_base_ = ['../../../configs/demo/unet-s4-d8_fcn_1xb16_digits-seg.py']

size = 32
hard = dict(
    canvas_size=size,
    digit_size=(12, 18),
    num_digits=(1, 3),
    noise_std=0.15,
    occlusion=0.25)
data_preprocessor = dict(
    mean=[41.0] * 3, std=[61.0] * 3, size=(size, size))
model = dict(data_preprocessor=data_preprocessor)
train_dataloader = dict(
    dataset=dict(num_samples=600, max_per_class=60, **hard))
val_dataloader = dict(dataset=dict(num_samples=200, **hard))
test_dataloader = val_dataloader
