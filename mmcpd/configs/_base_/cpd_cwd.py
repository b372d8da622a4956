# CPD with channel-wise distillation (CWD) of the seg logits from the
# unpruned model, for segmentation, in mmengine's pure-Python config style:
# configs/_base_/cpd_cwd.py.
#   with read_base():
#       from .my_segformer import *  # your pure-Python config
#       from mmcpd.configs._base_.cpd_cwd import *
from mmengine.config import read_base

with read_base():
    from .cpd_hook import *  # noqa: F401,F403

# The segmentation default by evidence: docs/distill.md.
distill = dict(
    distill_losses=[dict(type='CWDLoss', tau=4.0, loss_weight=3.0)],
    keep_task_loss=True)
