# Quality benchmark, detection: the demo RetinaNet
# (configs/demo/retinanet-r18-w16_1xb16_digits-det.py: ResNet-18 at a quarter
# of its width, three stages, FPN of 32 channels, a two-conv head) on the
# demo's DigitsDetDataset canvases (64x64, 1-3 digits of 16-24 px; 400 train
# and 100 val canvases), trained from scratch for its 1000 iterations
# (benchmarks/quality/arms.py): 77.4 bbox mAP. The only change: the
# generated COCO folders go under work_dirs/ (ignored by git) instead of
# data/; the canvases are the same (they depend on the seed only).
_base_ = ['../../../configs/demo/retinanet-r18-w16_1xb16_digits-det.py']

data_root = 'work_dirs/data/digits_det'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + '/val/annotations.json')
test_evaluator = val_evaluator
