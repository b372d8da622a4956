# CPD on the demo UNet: prune the trained baseline
# (./unet-s4-d8_fcn_1xb16_digits-seg.py) to about half its FLOPs in 10 steps
# over the first 100 iterations, with channel-wise distillation (CWD) of the
# seg logits from the baseline as teacher, then fine-tune to iteration 200.
# `tools/demo.py` runs the whole chain; by hand:
#   python tools/train.py configs/demo/unet-s4-d8_fcn_1xb16_digits-seg.py
#   python tools/train.py configs/demo/cpd_unet_digits-seg.py
_base_ = ['./unet-s4-d8_fcn_1xb16_digits-seg.py', '../_base_/cpd_cwd.py']

# the baseline checkpoint that tools/train.py writes by default
load_from = 'work_dirs/unet-s4-d8_fcn_1xb16_digits-seg/iter_300.pth'

custom_hooks = [
    dict(
        type='mmcpd.hooks.CPDHook',
        interval=10,
        num_steps=10,
        target=0.5,
        metric='flops',
        importance='hessian',
        round_to=8,
        rank_by='latency',
        min_channels=8,
        input_shape=(1, 3, 64, 64))
]
distill = dict(distill_losses=[dict(type='CWDLoss', tau=4.0, loss_weight=3.0)])

# fine-tuning schedule: a fifth of the baseline's learning rate
max_iters = 200
interval = 100
optim_wrapper = dict(optimizer=dict(lr=0.001))
param_scheduler = [
    dict(
        type='CosineAnnealingLR',
        T_max=max_iters,
        by_epoch=False,
        begin=0,
        end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=interval)
default_hooks = dict(checkpoint=dict(interval=interval))
