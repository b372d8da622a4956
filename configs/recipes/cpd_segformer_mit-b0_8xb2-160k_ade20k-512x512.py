# CPD recipe: ADE20K SegFormer MiT-B0 (MMSeg zoo, 37.41 mIoU), pruned by
# 30% of its FLOPs with channel-wise distillation (CWD) of the seg logits
# from the unpruned model (the paper found CWD kept the most mIoU). The
# target is our choice for this already small model. Needs ADE20K in
# data/ade; `load_from` downloads the zoo checkpoint.
#   bash tools/dist_train.sh \
#       configs/recipes/cpd_segformer_mit-b0_8xb2-160k_ade20k-512x512.py 8
_base_ = [
    'mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py',
    '../_base_/cpd_cwd.py'
]

load_from = 'https://download.openmmlab.com/mmsegmentation/v0.5/segformer/segformer_mit-b0_512x512_160k_ade20k/segformer_mit-b0_512x512_160k_ade20k_20210726_101530-8ffa8fda.pth'  # noqa
# the whole model comes from `load_from`: no ImageNet backbone init
model = dict(backbone=dict(init_cfg=None))

# 40k iterations: 100 prune steps over the first 20k, then fine-tuning.
cpd = dict(interval=200, end=20000, target=0.3)

param_scheduler = [
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=1.0,
        begin=0,
        end=40000,
        by_epoch=False)
]
train_cfg = dict(max_iters=40000, val_interval=4000)
default_hooks = dict(checkpoint=dict(interval=4000))
