# Transfer benchmark (../transfer.py), classification, zoo width: MMPretrain's
# ResNet-50 (the model of `mmpretrain::resnet/resnet50_8xb32_in1k.py`: the
# ImageNet stem, bottlenecks 64-256 to 512-2048 channels, pytorch style) from
# random init -- no pretrained weights -- on the data, schedule and
# optimiser of ./shapes32_mbv2_cls.py (32 px colour shapes, 16 classes). The
# zoo's strides are kept: 32 px is 8x8 after the stem and ends at 1x1.
_base_ = ['./shapes32_mbv2_cls.py']

# ResNet's defaults: 4 stages, pytorch style
model = dict(
    backbone=dict(_delete_=True, type='ResNet', depth=50, out_indices=(3, )),
    head=dict(in_channels=2048))
