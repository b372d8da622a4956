# CPD for detection: the `cpd` pruning settings (./cpd_hook.py) and
# channel-wise distillation (CWD) of the class score map from the unpruned
# model. Adopt it by inheriting it after your MMDetection config:
#   _base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
#             'mmcpd::_base_/cpd_det.py']
#   load_from = '<your trained checkpoint>'
#   cpd = dict(input_shape=(1, 3, 800, 1333))
# COCO configs resize keeping the aspect ratio, so no input size can be read
# from them: say in `cpd.input_shape` at which size to comb the model (the
# run asks for it otherwise; a fixed Resize, crop or pre-processor `size`
# is read as for the other tasks). `runner_type` builds the runner with
# mmcpd's CPDRunner, which wraps your `model` into a
# DistillWrapper(student=model, **distill) first: the teacher is a frozen
# copy of the student as loaded from `load_from`. See docs/cpd_configs.md.
_base_ = ['./cpd_hook.py']

distill = dict(
    # CWD (Shu et al., ICCV 2021) on the class logits of RetinaNet's head
    # (`bbox_head.retina_cls`, before the sigmoid), tau 1, weight 1. The
    # head is shared by the FPN levels and a recorded module keeps its last
    # call's output: the coarsest level is distilled. The detection default
    # by evidence (docs/demo.md; the demo RetinaNet at 2x and 4x fewer
    # FLOPs, 2 seeds each): +0.8 bbox mAP over no distillation on average
    # (+0.75 at 2x, +0.9 at 4x; ahead on 2 of 4 runs), where CWD on the
    # FPN's levels P3-P5 (`neck.fpn_convs.0`-`2`, tau 1, weight 1 each)
    # gave -0.7 (-2.95 at 2x, +1.55 at 4x); weight 10 per FPN level
    # (mmrazor's) fell 7.7 points below no distillation at 2x. Other heads
    # name their own class conv (FCOS: `bbox_head.conv_cls`, ATSS:
    # `bbox_head.atss_cls`, RTMDet: `bbox_head.rtm_cls.2`) or the FPN's
    # levels; `distill = None` prunes without distillation.
    distill_losses=[
        dict(
            type='CWDLoss',
            tau=1.0,
            loss_weight=1.0,
            outputs='bbox_head.retina_cls',
            name='cwd_score')
    ],
    keep_task_loss=True)
