# CPD with logit KD from the unpruned model, for classification, in
# mmengine's pure-Python config style: configs/_base_/cpd_kd.py.
#   with read_base():
#       from .my_resnet18 import *  # your pure-Python config
#       from mmcpd.configs._base_.cpd_kd import *
from mmengine.config import read_base

with read_base():
    from .cpd_hook import *  # noqa: F401,F403

# The classification default by evidence: docs/distill.md.
distill = dict(
    distill_losses=[dict(type='KDLoss', tau=1.0, loss_weight=1.0)],
    keep_task_loss=True)
