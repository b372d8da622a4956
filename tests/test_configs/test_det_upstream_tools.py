"""MMDetection's own tools run a CPD config of an installed mmcpd (issue
25): ``tools/train.py`` prunes and distils the demo RetinaNet, inherited by
a user's config next to ``mmcpd::_base_/cpd_det.py``; ``tools/test.py``
evaluates ``pruned_deploy.pth`` (with the CPD config, which builds the
CPDRunner, and with the deploy config); ``mmdet.apis.init_detector`` loads
it.
As tests/test_configs/test_upstream_tools.py: a wheel install in a fresh
virtual environment, no checkout on the path, the tools as mmdet installs
them."""
import os.path as osp

from .test_upstream_tools import _copy_demo, _results, _run, _tools, _write
from .test_upstream_tools import env  # noqa: F401  (the module's fixture)

DET_USER = '''_base_ = ['./my_retinanet.py', 'mmcpd::_base_/cpd_det.py']
cpd = dict(interval=1, num_steps=1, target=0.3)
# the base distils nothing: CWD on the score maps of every level
distill = dict(distill_losses=[dict(type='CWDLoss', tau=1.0)],
               probe_shape=(3, 64, 64))
# every box counts: two iterations from scratch score below the default
model = dict(test_cfg=dict(score_thr=0.0))
train_cfg = dict(max_iters=2, val_interval=2)
default_hooks = dict(checkpoint=dict(interval=2), logger=dict(interval=1))
train_dataloader = dict(batch_size=4, dataset=dict(num_samples=8))
val_dataloader = dict(batch_size=4, dataset=dict(num_samples=4))
test_dataloader = dict(batch_size=4, dataset=dict(num_samples=4))
'''


def test_mmdet_tools_train_test_and_load(env):  # noqa: F811
    _copy_demo(env, 'retinanet-r18-w16_1xb16_digits-det.py',
               'my_retinanet.py')
    config = _write(env, 'my_det_cpd.py', DET_USER)
    tools = _tools('mmdet')
    work = env['cwd'] / 'work_det'
    proc = _run(env, osp.join(tools, 'train.py'), config, '--work-dir', work)
    log = proc.stdout + proc.stderr
    assert ('combed with an input of shape (1, 3, 64, 64), from '
            '`test_pipeline[1]` (Resize.scale)') in log
    assert 'CPDHook step 1/1' in log
    assert 'loss_cwd' in log  # distilled
    # the data were generated into the user's folder, as COCO files
    assert (env['cwd'] / 'data' / 'digits_det' / 'val' /
            'annotations.json').is_file()
    deploy = work / 'pruned_deploy.pth'
    assert deploy.is_file() and (work / 'pruned_deploy.py').is_file()

    # mmdet's test.py builds the CPDRunner from the CPD config's
    # `runner_type`: it resizes the model to the spec before loading
    scores, logs = [], []
    for cfg_file in (config, work / 'pruned_deploy.py'):
        proc = _run(env, osp.join(tools, 'test.py'), cfg_file, deploy,
                    '--work-dir', work / 'test')
        log = proc.stdout + proc.stderr
        assert 'size mismatch' not in log and 'missing keys' not in log
        logs.append(log)
        scores.append([line.split('bbox_mAP_copypaste:')[1].split()
                       for line in log.splitlines()
                       if 'bbox_mAP_copypaste:' in line])
    assert 'Load the pruned checkpoint' in logs[0]  # CPDRunner resized it
    # one COCO evaluation each, of the same pruned model
    assert len(scores[0]) == 1 and scores[0] == scores[1], scores

    # mmdet's init_detector takes the deploy config; the model gives what
    # mmcpd's init_model gives from the CPD config
    proc = _run(
        env, '-c', 'import torch\n'
        'from mmdet.apis import init_detector\n'
        'import mmcpd.apis\n'
        'from mmcpd.comb import default_forward\n'
        'from mmcpd.comb.opaque import flat_tensors\n'
        f"ckpt = {str(deploy)!r}\n"
        f"model = init_detector({str(work / 'pruned_deploy.py')!r}, ckpt,\n"
        "                      device='cpu')\n"
        f'ref = mmcpd.apis.init_model({config!r}, ckpt)\n'
        'x = torch.rand(1, 3, 64, 64)\n'
        'with torch.no_grad():\n'
        '    a = flat_tensors(default_forward(model, x))\n'
        '    b = flat_tensors(default_forward(ref, x))\n'
        "print('RESULT', len(a) == len(b) == 6 and all(\n"
        '    torch.equal(u, v) for u, v in zip(a, b)))\n')
    assert _results(proc) == ['True'], proc.stderr
