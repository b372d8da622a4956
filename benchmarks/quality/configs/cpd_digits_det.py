# CPD on the quality benchmark's detector (./digits_det.py): the demo's CPD
# config (configs/demo/cpd_retinanet_digits-det.py: the CPD settings of
# configs/_base_/cpd_hook.py, a fifth of the baseline's learning rate,
# cosine to the end) on the benchmark's data folder; run.py sets the
# target, distillation, importance and iterations of each arm (pruning
# over the first half of the iterations, fine-tuning over the second).
_base_ = ['../../../configs/demo/cpd_retinanet_digits-det.py']

data_root = 'work_dirs/data/digits_det'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + '/val/annotations.json')
test_evaluator = val_evaluator
load_from = None  # run.py: the benchmark's baseline
