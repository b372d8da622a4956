# CPD pruning without distillation, in mmengine's pure-Python config style:
# the same settings as configs/_base_/cpd_hook.py (docs/cpd_configs.md).
#   with read_base():
#       from .my_resnet18 import *  # your pure-Python config
#       from mmcpd.configs._base_.cpd_hook import *
#   cpd.update(target=0.7)
from mmcpd.engine.cpd_runner import CPDRunner

runner_type = CPDRunner
cpd = dict(
    interval=100,
    target=0.5,
    # or 'latency': measured, the target met on the exported model by a
    # closed loop (`closed_loop=dict(tol=0.03)`, docs/deploy.md)
    metric='flops',
    importance='hessian',
    schedule='linear',
    # widths, ranking and floor by the transfer benchmark's worst case
    # (docs/quality/transfer.md)
    round_to=4,
    rank_by=None,
    min_channels=1,
    max_ratio=0.9,
    input_shape=None,
    deploy_file='pruned_deploy.pth',
    plot_file='cpd_pruning.png')
