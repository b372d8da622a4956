# CPD for detection, without distillation, in mmengine's pure-Python config
# style: configs/_base_/cpd_det.py (which gives the evidence).
#   with read_base():
#       from .my_retinanet import *  # your pure-Python config
#       from mmcpd.configs._base_.cpd_det import *
#   cpd.update(input_shape=(1, 3, 800, 1333))  # keep-ratio COCO resizes
from mmengine.config import read_base

with read_base():
    from .cpd_hook import *  # noqa: F401,F403

# No `distill`: the detection default by evidence,
# docs/quality/detection.md.
