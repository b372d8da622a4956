# CPD on the demo RetinaNet: prune the trained baseline
# (./retinanet-r18-w16_1xb16_digits-det.py) to about half its FLOPs in 10
# steps over the first 100 iterations, with channel-wise distillation (CWD)
# of the class score map from the baseline as teacher (the detection base,
# ../_base_/cpd_det.py, distils nothing by default: the demo keeps CWD so
# that it shows the DistillWrapper on a detector), then fine-tune to
# iteration 300. `tools/demo.py --task det` runs the whole
# chain; by hand:
#   python tools/train.py configs/demo/retinanet-r18-w16_1xb16_digits-det.py
#   python tools/train.py configs/demo/cpd_retinanet_digits-det.py
_base_ = ['./retinanet-r18-w16_1xb16_digits-det.py', '../_base_/cpd_det.py']

# the baseline checkpoint that tools/train.py writes by default
load_from = 'work_dirs/retinanet-r18-w16_1xb16_digits-det/iter_1000.pth'

# what differs from the CPD base (configs/_base_/cpd_hook.py): 10 prune
# steps, one every 10 iterations; the model is combed at 64x64 (the test
# pipeline's fixed Resize)
cpd = dict(interval=10, num_steps=10)
# distillation: CWD on RetinaNet's class logits (the shared head's last
# call); the connectors are sized on a canvas
distill = dict(
    distill_losses=[
        dict(
            type='CWDLoss',
            tau=1.0,
            loss_weight=1.0,
            outputs='bbox_head.retina_cls',
            name='cwd_score')
    ],
    keep_task_loss=True,
    probe_shape=(3, 64, 64))

# fine-tuning schedule: a fifth of the baseline's learning rate
max_iters = 300
interval = 100
optim_wrapper = dict(optimizer=dict(lr=0.0008))
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
