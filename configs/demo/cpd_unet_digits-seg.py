# CPD on the demo UNet: prune the trained baseline
# (./unet-s4-d8_fcn_1xb16_digits-seg.py) to about half its FLOPs in 10 steps
# over the first 100 iterations, with channel-wise distillation (CWD) of the
# seg logits from the baseline as teacher, then fine-tune to iteration 200.
# `tools/demo.py` runs the whole chain; by hand:
#   python tools/train.py configs/demo/unet-s4-d8_fcn_1xb16_digits-seg.py
#   python tools/train.py configs/demo/cpd_unet_digits-seg.py
_base_ = ['./unet-s4-d8_fcn_1xb16_digits-seg.py', '../_base_/cpd_cwd.py']

# the baseline checkpoint that tools/train.py writes by default
load_from = 'work_dirs/unet-s4-d8_fcn_1xb16_digits-seg/iter_600.pth'

# what differs from the CPD base (configs/_base_/cpd_hook.py): 10 prune
# steps, one every 10 iterations; the model is combed at 64x64 (the
# pre-processor's size)
cpd = dict(interval=10, num_steps=10)
# distillation: the base's CWD (tau 4, weight 3) of the seg logits

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
