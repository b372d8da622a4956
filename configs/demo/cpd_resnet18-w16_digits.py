# CPD on the demo ResNet: prune the trained baseline
# (./resnet18-w16_1xb64_digits.py) to about half its FLOPs in 10 steps over
# the first 100 iterations, with logit KD from the baseline as teacher, then
# fine-tune to iteration 200. `tools/demo.py` runs the whole chain; by hand:
#   python tools/train.py configs/demo/resnet18-w16_1xb64_digits.py
#   python tools/train.py configs/demo/cpd_resnet18-w16_digits.py
_base_ = ['./resnet18-w16_1xb64_digits.py', '../_base_/cpd_kd.py']

# the baseline checkpoint that tools/train.py writes by default
load_from = 'work_dirs/resnet18-w16_1xb64_digits/iter_300.pth'

# what differs from the CPD base (configs/_base_/cpd_hook.py): 10 prune
# steps, one every 10 iterations; the model is combed at 32x32 (the crop
# of the train pipeline)
cpd = dict(interval=10, num_steps=10)
distill = dict(distill_losses=[dict(type='KDLoss', tau=4.0, loss_weight=1.0)])

# fine-tuning schedule: a tenth of the baseline's learning rate
max_iters = 200
interval = 100
optim_wrapper = dict(optimizer=dict(lr=0.01))
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
