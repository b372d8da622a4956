# CPD recipe: ImageNet ResNet-50 (MMPretrain zoo, 76.55% top-1), pruned to
# about 0.45 of its FLOPs (2.2x fewer; the paper reports a speedup of over
# 2.15x for ResNet-50-class models at acceptable loss) with logit KD from
# the unpruned model. Needs ImageNet in data/imagenet as in the zoo config;
# `load_from` downloads the zoo checkpoint (student and teacher).
#   bash tools/dist_train.sh configs/recipes/cpd_resnet50_8xb32_in1k.py 8
_base_ = ['mmpretrain::resnet/resnet50_8xb32_in1k.py', '../_base_/cpd_kd.py']

load_from = 'https://download.openmmlab.com/mmclassification/v0/resnet/resnet50_8xb32_in1k_20210831-ea4938fc.pth'  # noqa

# 30 epochs of 5,005 iterations (8 GPUs x 32 images); 100 prune steps over
# the first 10 epochs, then 20 epochs of fine-tuning with the pruned model.
cpd = dict(interval=500, end=50050, target=0.55)

optim_wrapper = dict(optimizer=dict(lr=0.01))
param_scheduler = dict(
    _delete_=True,
    type='CosineAnnealingLR',
    T_max=30,
    by_epoch=True,
    begin=0,
    end=30)
train_cfg = dict(by_epoch=True, max_epochs=30, val_interval=1)
