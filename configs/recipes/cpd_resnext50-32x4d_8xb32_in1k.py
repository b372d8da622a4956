# CPD recipe: ImageNet ResNeXt-50 32x4d (MMPretrain zoo, 77.90% top-1),
# pruned to 0.23 of its FLOPs (the paper's 4.31x fewer FLOPs, at 1.8%
# relative accuracy loss) with logit KD from the unpruned model. Needs
# ImageNet in data/imagenet; `load_from` downloads the zoo checkpoint.
#   bash tools/dist_train.sh \
#       configs/recipes/cpd_resnext50-32x4d_8xb32_in1k.py 8
_base_ = [
    'mmpretrain::resnext/resnext50-32x4d_8xb32_in1k.py', '../_base_/cpd_kd.py'
]

load_from = 'https://download.openmmlab.com/mmclassification/v0/resnext/resnext50_32x4d_b32x8_imagenet_20210429-56066e27.pth'  # noqa

# 60 epochs of 5,005 iterations (8 GPUs x 32 images); 200 prune steps over
# the first 20 epochs (a high target needs a slow schedule), then 40
# epochs of fine-tuning. Grouped convs keep whole groups: multiples of 32.
cpd = dict(
    interval=500,
    end=100100,
    target=0.768,
    round_to=32,
    min_channels=32)

optim_wrapper = dict(optimizer=dict(lr=0.01))
param_scheduler = dict(
    _delete_=True,
    type='CosineAnnealingLR',
    T_max=60,
    by_epoch=True,
    begin=0,
    end=60)
train_cfg = dict(by_epoch=True, max_epochs=60, val_interval=1)
