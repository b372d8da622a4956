# CPD recipe: ImageNet MobileNetV2 (MMPretrain zoo, 71.86% top-1), pruned
# by 30% of its FLOPs with logit KD from the unpruned model. MobileNetV2 is
# already compact: the target is moderate (our choice; the paper gives no
# MobileNetV2 number in its abstract). Needs ImageNet in data/imagenet;
# `load_from` downloads the zoo checkpoint.
#   bash tools/dist_train.sh configs/recipes/cpd_mobilenet-v2_8xb32_in1k.py 8
_base_ = [
    'mmpretrain::mobilenet_v2/mobilenet-v2_8xb32_in1k.py',
    '../_base_/cpd_kd.py'
]

load_from = 'https://download.openmmlab.com/mmclassification/v0/mobilenet_v2/mobilenet_v2_batch256_imagenet_20200708-3b2dc3af.pth'  # noqa

# 60 epochs of 5,005 iterations (8 GPUs x 32 images); 100 prune steps over
# the first 10 epochs, then fine-tuning.
cpd = dict(interval=500, end=50050, target=0.3)

optim_wrapper = dict(optimizer=dict(lr=0.01))
param_scheduler = dict(
    _delete_=True,
    type='CosineAnnealingLR',
    T_max=60,
    by_epoch=True,
    begin=0,
    end=60)
train_cfg = dict(by_epoch=True, max_epochs=60, val_interval=1)
