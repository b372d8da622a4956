# CPD for detection: the `cpd` pruning settings (./cpd_hook.py), without
# distillation. Adopt it by inheriting it after your MMDetection config:
#   _base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
#             'mmcpd::_base_/cpd_det.py']
#   load_from = '<your trained checkpoint>'
#   cpd = dict(input_shape=(1, 3, 800, 1333))
# COCO configs resize keeping the aspect ratio, so no input size can be read
# from them: say in `cpd.input_shape` at which size to comb the model (the
# run asks for it otherwise; a fixed Resize, Pad, crop or pre-processor
# `size` is read as for the other tasks). See docs/cpd_configs.md.
_base_ = ['./cpd_hook.py']

# No distillation: the detection default by evidence (benchmarks/quality,
# group `detection`, docs/quality/detection.md: the demo RetinaNet at 2x and
# 4x fewer FLOPs, 5 seeds): channel-wise distillation (CWD, tau 1, weight 1)
# from the unpruned model fell below no distillation on every arm and
# target: on the class score map (`bbox_head.retina_cls`) -0.74 / -2.82 bbox
# mAP at 2x / 4x, on FPN levels P3-P5 -2.46 / -2.54, on the score maps of
# every level (CWDLoss without `outputs`: a dense head's "logits") -2.12 /
# -1.74 (paired over seeds; ahead in 5 of 30 runs). To distil anyway, e.g.
#   distill = dict(distill_losses=[dict(type='CWDLoss', tau=1.0,
#                                       loss_weight=1.0)])
# (the runner wraps the model in a DistillWrapper with the unpruned model as
# teacher, as cpd_cwd.py does for segmentation). No `distill` key is set
# here, so that such a dict needs no `_delete_`.
