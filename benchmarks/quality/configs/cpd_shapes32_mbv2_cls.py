# CPD on the transfer benchmark's ./shapes32_mbv2_cls.py (zoo MobileNetV2
# on 32 px shapes): the CPD settings of configs/_base_/cpd_hook.py, a tenth
# of the baseline's learning rate, 200 iterations (as ./cpd_shapes16_cls.py);
# transfer.py sets each arm.
_base_ = ['./shapes32_mbv2_cls.py', '../../../configs/_base_/cpd_hook.py']

optim_wrapper = dict(optimizer=dict(lr=0.01))
param_scheduler = [
    dict(
        type='CosineAnnealingLR',
        T_max=200,
        by_epoch=False,
        begin=0,
        end=200),
]
train_cfg = dict(max_iters=200, val_interval=200)
