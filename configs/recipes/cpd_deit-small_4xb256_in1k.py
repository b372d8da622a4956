# CPD recipe: ImageNet DeiT-S (MMPretrain zoo, 79.86% top-1), pruned by 40%
# of its parameters (the paper's ablation: accuracy holds until about 40%
# sparsity, then falls) with logit KD from the unpruned model. Heads are
# pruned whole and MLP widths in multiples of 8. Needs ImageNet in
# data/imagenet; `load_from` downloads the zoo checkpoint.
#   bash tools/dist_train.sh configs/recipes/cpd_deit-small_4xb256_in1k.py 4
_base_ = ['mmpretrain::deit/deit-small_4xb256_in1k.py', '../_base_/cpd_kd.py']

load_from = 'https://download.openmmlab.com/mmclassification/v0/deit/deit-small_pt-4xb256_in1k_20220218-9425b9bb.pth'  # noqa

# 100 epochs of 1,251 iterations (4 GPUs x 256 images); 100 prune steps
# over the first 20 epochs, then fine-tuning.
cpd = dict(interval=250, end=25020, target=0.4, metric='params')

optim_wrapper = dict(optimizer=dict(lr=1e-4))
param_scheduler = [
    dict(
        type='CosineAnnealingLR',
        T_max=100,
        eta_min=1e-6,
        by_epoch=True,
        begin=0,
        end=100)
]
train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=5)
