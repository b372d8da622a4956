# CPD on the transfer benchmark's ./shapes_seg.py: the CPD settings of
# configs/_base_/cpd_hook.py, a fifth of the baseline's learning rate, 200
# iterations (as ./cpd_digits_seg.py); transfer.py sets each arm.
_base_ = ['./shapes_seg.py', '../../../configs/_base_/cpd_hook.py']

optim_wrapper = dict(optimizer=dict(lr=0.001))
param_scheduler = [
    dict(
        type='CosineAnnealingLR',
        T_max=200,
        by_epoch=False,
        begin=0,
        end=200),
]
train_cfg = dict(max_iters=200, val_interval=200)
