# CPD recipe: ADE20K ViT DeiT-S + UPerNet (MMSeg zoo, 42.96 mIoU), pruned
# by 40% of its FLOPs (the paper reports DeiT-S latency -47%) with
# channel-wise distillation (CWD) of the seg logits from the unpruned
# model. Needs ADE20K in data/ade; `load_from` downloads the zoo
# checkpoint.
#   bash tools/dist_train.sh \
#       configs/recipes/cpd_vit_deit-s16_upernet_8xb2-160k_ade20k-512x512.py 8
_base_ = [
    'mmseg::vit/vit_deit-s16_upernet_8xb2-160k_ade20k-512x512.py',
    '../_base_/cpd_cwd.py'
]

load_from = 'https://download.openmmlab.com/mmsegmentation/v0.5/vit/upernet_deit-s16_512x512_160k_ade20k/upernet_deit-s16_512x512_160k_ade20k_20210621_160903-5110d916.pth'  # noqa
# the whole model comes from `load_from`: no ImageNet backbone file
model = dict(pretrained=None)

# 40k iterations: 100 prune steps over the first 20k, then fine-tuning.
cpd = dict(interval=200, end=20000, target=0.4)

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
