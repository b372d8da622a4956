# CPD to a measured latency target, without distillation, in mmengine's
# pure-Python config style: configs/_base_/cpd_latency.py.
#   with read_base():
#       from .my_resnet50 import *  # your pure-Python config
#       from mmcpd.configs._base_.cpd_latency import *
from mmengine.config import read_base

with read_base():
    from .cpd_hook import *  # noqa: F401,F403

cpd.update(  # noqa: F405
    metric='latency',
    rank_by=None,
    # whole AVX2 blocks where the table allows a narrower width (as before
    # the CPD bases' FLOPs default became 4)
    round_to=8,
    latency_table=dict(provider='cpu'),
    closed_loop=dict(tol=0.03, rounds=4))
