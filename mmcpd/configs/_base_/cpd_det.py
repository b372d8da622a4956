# CPD with channel-wise distillation (CWD) of RetinaNet's class score map
# from the unpruned model, for detection, in mmengine's pure-Python config
# style: configs/_base_/cpd_det.py (which says why, and how other heads
# name their class conv).
#   with read_base():
#       from .my_retinanet import *  # your pure-Python config
#       from mmcpd.configs._base_.cpd_det import *
#   cpd.update(input_shape=(1, 3, 800, 1333))  # keep-ratio COCO resizes
from mmengine.config import read_base

with read_base():
    from .cpd_hook import *  # noqa: F401,F403

# The detection default by evidence: docs/demo.md.
distill = dict(
    distill_losses=[
        dict(
            type='CWDLoss',
            tau=1.0,
            loss_weight=1.0,
            outputs='bbox_head.retina_cls',
            name='cwd_score')
    ],
    keep_task_loss=True)
