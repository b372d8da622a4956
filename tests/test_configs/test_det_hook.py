"""CPD trains a single-stage detector end to end (issue 25): the demo
RetinaNet, every parameter and buffer randomised, trains under CPDRunner
with CPDHook and DistillWrapper (the detection base's CWD) on the digit
canvases; the deploy checkpoint computes what the masked student computed,
and MMDetection's own ``init_detector`` loads it with the deploy config."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import RUNNERS

from mmcpd.apis import build_model_from_cfg
from mmcpd.comb.trace import default_forward
from mmcpd.engine.hooks import CPDHook
from mmcpd.models import DistillWrapper
from mmcpd.prune.surgery.verify import (masked_output, outputs_match,
                                        randomize_model, same_random)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = osp.join(REPO, 'configs', 'demo')
ITERS = 4


def _config(tmp_path) -> Config:
    """The demo CPD config, shrunk to a few canvases and iterations, its
    data and work dir in ``tmp_path``, starting from random weights."""
    cfg = Config.fromfile(osp.join(DEMO, 'cpd_retinanet_digits-det.py'))
    data = str(tmp_path / 'data')
    cfg.train_dataloader.batch_size = 4
    cfg.train_dataloader.dataset.update(data_root=data, num_samples=16)
    cfg.val_dataloader.batch_size = 4
    cfg.val_dataloader.dataset.update(data_root=data, num_samples=4)
    cfg.test_dataloader = cfg.val_dataloader
    cfg.val_evaluator.ann_file = osp.join(data, 'val', 'annotations.json')
    cfg.test_evaluator = cfg.val_evaluator
    cfg.train_cfg.update(max_iters=ITERS, val_interval=ITERS)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint.interval = ITERS
    cfg.default_hooks.logger.interval = 1
    cfg.optim_wrapper.optimizer.lr = 1e-3
    # one step at iteration 2, masks: the oracle compares masked and cut
    cfg.cpd.update(interval=2, num_steps=1, target=0.3, importance='taylor',
                   shrink='mask', plot_file=None)
    cfg.work_dir = str(tmp_path / 'work')
    cfg.log_level = 'WARNING'
    # the "trained baseline": random weights, BN statistics included
    torch.manual_seed(0)
    model = randomize_model(build_model_from_cfg(Config.fromfile(
        osp.join(DEMO, 'retinanet-r18-w16_1xb16_digits-det.py'))), 0)
    cfg.load_from = str(tmp_path / 'baseline.pth')
    torch.save(dict(state_dict=model.state_dict()), cfg.load_from)
    return cfg


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp('det_hook')
    cfg = _config(tmp_path)
    runner = RUNNERS.build(cfg)
    runner.train()
    hook, = [h for h in runner.hooks if isinstance(h, CPDHook)]
    return dict(runner=runner, hook=hook, work=cfg.work_dir,
                config=osp.join(cfg.work_dir, 'pruned_deploy.py'),
                checkpoint=osp.join(cfg.work_dir, 'pruned_deploy.pth'))


def test_it_pruned_and_distilled(trained):
    runner, hook = trained['runner'], trained['hook']
    assert isinstance(runner.model, DistillWrapper)
    assert hook.session.history[-1]['sparsity'] > 0.2
    assert sum(len(v) for v in hook.session.removed.values()) > 0
    scalars = runner.message_hub.log_scalars
    # the base's CWD term was trained on and logged
    assert 'train/loss_feat_cwd_score' in scalars
    assert 'val/coco/bbox_mAP' in scalars


def test_deploy_checkpoint_computes_what_the_masked_student_did(trained):
    """mmdet's own ``init_detector`` builds the deploy config's model and
    loads the pruned checkpoint; it computes the masked student's head
    outputs (every level's class scores and box deltas)."""
    from mmdet.apis import init_detector
    hook = trained['hook']
    deployed = init_detector(trained['config'], trained['checkpoint'],
                             device='cpu')
    student = hook.student.eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    expected = masked_output(student, hook.session.comb, hook.session.removed,
                             x)
    with torch.no_grad(), same_random():
        got = default_forward(deployed, x)
    ok, diff = outputs_match(expected, got, 1e-4)
    assert ok, diff
    # the deploy model is smaller than the student it came from
    assert sum(p.numel() for p in deployed.parameters()) < sum(
        p.numel() for p in student.parameters())
