# CPD for classification: the `cpd` pruning settings (./cpd_hook.py) and
# logit KD from the unpruned model. Adopt it by inheriting it after your
# MMPretrain config:
#   _base_ = ['mmpretrain::resnet/resnet50_8xb32_in1k.py',
#             'mmcpd::_base_/cpd_kd.py']
#   load_from = '<your trained checkpoint>'
#   cpd = dict(target=0.6)               # optional: what differs
# `runner_type` builds the runner with mmcpd's CPDRunner, which wraps your
# `model` into a DistillWrapper(student=model, **distill) first: the
# teacher is a frozen copy of the student as loaded from `load_from`. See
# docs/cpd_configs.md.
_base_ = ['./cpd_hook.py']

distill = dict(
    # KD (Hinton et al. 2015): tau^2 * KL(softmax(t/tau), softmax(s/tau)).
    # The classification default by evidence (benchmarks/quality/,
    # docs/distill.md): +1.23 top-1 over no distillation at 2x/4x/8x FLOPs
    # over 3 seeds (+2.9 at 8x); tau 4, weight 3, KD during pruning only or
    # ramped down, a 2x wider teacher, the teacher fine-tuned alongside
    # (`train_teacher=True`) and feature MSE did not beat tau 1, weight 1
    # beyond the noise
    distill_losses=[dict(type='KDLoss', tau=1.0, loss_weight=1.0)],
    keep_task_loss=True)
