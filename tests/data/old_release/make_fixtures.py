"""Write the ``tests/data/old_release`` fixtures: training checkpoints made by
the CPDHook of the OLD release, for the test that a checkpoint written by that
release still resumes and converts.

MUST be run against the old release checkout (commit fe4c1b8, before the
package restructure), not against the restructured tree: the checkout root
has to come first on ``sys.path`` so that its ``mmcpd`` and its
``tests/test_hooks/toy_runner.py`` are the ones imported (checked below)::

    git worktree add /tmp/old fe4c1b8
    cd /tmp/old && PYTHONPATH=/tmp/old python \\
        /path/to/tests/data/old_release/make_fixtures.py \\
        --out /path/to/tests/data/old_release --scratch /tmp/fixture_runs

For each of ``shrink='physical'`` and ``shrink='mask'`` it

1. trains the toy runner of ``tests/test_hooks/toy_runner.py`` (``make_runner``
   with its defaults: 24 iters, ToyClassifier built after
   ``torch.manual_seed(0)``, SGD lr 0.05, batch 4, seed 0) with the CPDHook
   below and ``checkpoint_interval=6``, twice, each in a fresh process, and
   checks that both runs agree exactly (history, removed units, iter-6
   checkpoint weights, deploy weights);
2. copies the iter-6 checkpoint (after prune step 1, before step 2) to
   ``<out>/toy_<shrink>_iter_6.pth``;
3. resumes from that copy in a fresh process (``resume=True,
   load_from=<copy>``) and compares its end with the uninterrupted run's;
4. writes ``<out>/toy_<shrink>_iter_6.json``: the uninterrupted run's final
   ``hook.history``, ``hook.removed`` (str keys), the deploy checkpoint's
   tensor shapes, the hook dict and runner settings, the versions, and the
   outcome of the checks, and what the old ``convert_checkpoint`` makes of
   the iter-6 checkpoint (shapes, logits on a fixed input).

``python make_fixtures.py train --shrink S --work-dir D [--resume-from P]``
runs one training in this process (what step 1 and 3 spawn).
"""
import argparse
import copy
import hashlib
import json
import os
import os.path as osp
import platform
import random
import shutil
import subprocess
import sys

import numpy as np
import torch

COMMIT = 'fe4c1b800324e6604ca6b8fc9473acf22a0e5172'
CHECKPOINT_ITER = 6
CHECKPOINT_INTERVAL = 6
# make_runner's defaults in tests/test_hooks/toy_runner.py at fe4c1b8
MAX_ITERS = 24
HOOKS = {
    shrink: dict(type='CPDHook', interval=4, target=0.5, num_steps=3,
                 input_shape=(1, 3, 16, 16), shrink=shrink)
    for shrink in ('physical', 'mask')
}
RUNNER = dict(
    factory='tests/test_hooks/toy_runner.py::make_runner',
    call='make_runner(work_dir, HOOK, checkpoint_interval=6) '
         '(+ resume=True, load_from=<pth> to resume)',
    model='ToyClassifier() built right after torch.manual_seed(0)',
    max_iters=MAX_ITERS,
    checkpoint_interval=CHECKPOINT_INTERVAL,
    by_epoch=False,
    logger_interval=4,
    train_dataloader=dict(
        dataset='ToyData(length=32)', batch_size=4,
        sampler=dict(type='DefaultSampler', shuffle=True, seed=0),
        collate_fn=dict(type='default_collate')),
    optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9,
                                      weight_decay=1e-4)),
    randomness=dict(seed=0),
    model_seed=0,
    default_scope='mmengine',
    script_seeds=dict(torch_manual_seed=0, random_seed=0, numpy_seed=0),
)


def _seed():
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)


def _import_old(root):
    """Import mmcpd and the toy runner from the old checkout ``root``."""
    root = osp.realpath(root)
    sys.path.insert(0, root)
    import mmcpd
    here = osp.realpath(mmcpd.__file__)
    if not here.startswith(root + os.sep):
        raise SystemExit(f'mmcpd comes from {here}, not from the old '
                         f'checkout {root}: run with PYTHONPATH={root}')
    import mmcpd.hooks  # noqa: F401  (registers CPDHook)
    from tests.test_hooks import toy_runner
    if not osp.realpath(toy_runner.__file__).startswith(root + os.sep):
        raise SystemExit(f'toy_runner comes from {toy_runner.__file__}')
    return mmcpd, toy_runner


def _sha256(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def _tensor_digest(state):
    """name -> sha256 of the tensor's bytes (bitwise comparison)."""
    return {
        k: hashlib.sha256(v.detach().cpu().contiguous().numpy().tobytes())
        .hexdigest()
        for k, v in state.items() if isinstance(v, torch.Tensor)
    }


def train(args):
    """One training run in this process; writes <work_dir>/result.json."""
    _seed()
    mmcpd, toy_runner = _import_old(args.old_root)
    from mmcpd.hooks import CPDHook
    from mmcpd.utils.checkpoint import load_checkpoint_file
    hook_cfg = HOOKS[args.shrink]
    kwargs = {}
    if args.resume_from:
        kwargs = dict(resume=True, load_from=args.resume_from)
    runner = toy_runner.make_runner(
        args.work_dir, copy.deepcopy(hook_cfg),
        checkpoint_interval=CHECKPOINT_INTERVAL, **kwargs)
    assert runner.max_iters == MAX_ITERS, runner.max_iters
    runner.train()
    hook = next(h for h in runner.hooks if isinstance(h, CPDHook))
    deploy = torch.load(osp.join(args.work_dir, 'pruned_deploy.pth'),
                        weights_only=True)
    result = dict(
        mmcpd_file=mmcpd.__file__,
        mmcpd_version=mmcpd.__version__,
        final_iter=int(runner.iter),
        history=hook.history,
        removed={str(k): [int(u) for u in v]
                 for k, v in sorted(hook.removed.items())},
        deploy_shapes={k: list(v.shape)
                       for k, v in deploy['state_dict'].items()},
        deploy_meta=deploy.get('meta'),
        deploy_digest=_tensor_digest(deploy['state_dict']),
        student_digest=_tensor_digest(hook.student.state_dict()),
    )
    ckpt6 = osp.join(args.work_dir, f'iter_{CHECKPOINT_ITER}.pth')
    if osp.exists(ckpt6):
        ckpt = load_checkpoint_file(ckpt6)
        result['iter_6_digest'] = _tensor_digest(ckpt['state_dict'])
        result['iter_6_cpd_step'] = int(ckpt['cpd_hook']['step'])
    with open(osp.join(args.work_dir, 'result.json'), 'w') as f:
        json.dump(result, f, indent=1)


def _spawn(args, shrink, work_dir, resume_from=None):
    if osp.exists(work_dir):
        shutil.rmtree(work_dir)
    os.makedirs(work_dir)
    cmd = [sys.executable, osp.abspath(__file__), 'train', '--shrink', shrink,
           '--work-dir', work_dir, '--old-root', args.old_root]
    if resume_from:
        cmd += ['--resume-from', resume_from]
    env = dict(os.environ, PYTHONPATH=osp.realpath(args.old_root))
    with open(osp.join(work_dir, 'stdout.log'), 'w') as log:
        subprocess.run(cmd, cwd=args.old_root, env=env, check=True,
                       stdout=log, stderr=subprocess.STDOUT)
    with open(osp.join(work_dir, 'result.json')) as f:
        return json.load(f)


def _compare(a, b, keys):
    return {k: a[k] == b[k] for k in keys}


def _converted(pth, scratch, toy_runner):
    """Convert the fixture with the old code: the small model's tensor
    shapes and its logits on a fixed input (eval mode)."""
    from mmcpd.prune.convert import convert_checkpoint
    from mmcpd.prune.spec import PrunedSpec, apply_spec
    out = osp.join(scratch, 'converted.pth')
    convert_checkpoint(toy_runner.ToyClassifier(), pth, out)
    deploy = torch.load(out, weights_only=True)
    model = toy_runner.ToyClassifier()
    apply_spec(model, PrunedSpec.from_dict(deploy['pruned_spec']))
    model.load_state_dict(deploy['state_dict'])
    model.eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(x)
    return dict(
        call='convert_checkpoint(ToyClassifier(), <pth>, <out>)',
        shapes={k: list(v.shape) for k, v in deploy['state_dict'].items()},
        input='torch.randn(2, 3, 16, 16, '
              'generator=torch.Generator().manual_seed(0))',
        logits=logits.tolist())


def make_all(args):
    _seed()
    mmcpd, toy_runner = _import_old(args.old_root)
    import mmengine
    from mmcpd.utils.checkpoint import load_checkpoint_file
    os.makedirs(args.out, exist_ok=True)
    summary = {}
    for shrink in ('physical', 'mask'):
        scratch = osp.join(args.scratch, shrink)
        run1 = _spawn(args, shrink, osp.join(scratch, 'run1'))
        run2 = _spawn(args, shrink, osp.join(scratch, 'run2'))
        same = _compare(run1, run2, [
            'final_iter', 'history', 'removed', 'deploy_shapes',
            'deploy_digest', 'student_digest', 'iter_6_digest'])
        if not all(same.values()):
            raise SystemExit(f'{shrink}: two fresh runs differ: {same}')

        name = f'toy_{shrink}_iter_{CHECKPOINT_ITER}'
        pth = osp.join(args.out, name + '.pth')
        shutil.copyfile(
            osp.join(scratch, 'run1', f'iter_{CHECKPOINT_ITER}.pth'), pth)
        resumed = _spawn(args, shrink, osp.join(scratch, 'resumed'),
                         resume_from=pth)
        resume_same = _compare(run1, resumed, [
            'final_iter', 'history', 'removed', 'deploy_shapes',
            'deploy_digest', 'student_digest'])

        # weights_only, with mmengine's types (message_hub) allowed
        ckpt = load_checkpoint_file(pth)
        fixture = dict(
            description=(
                f'Training checkpoint at iter {CHECKPOINT_ITER} (after '
                'CPDHook prune step 1 of 3, before step 2) written by the '
                f'CPDHook of mmcpd {mmcpd.__version__} at commit '
                f'{COMMIT[:7]}, and what the uninterrupted run of the same '
                'seed ended with.'),
            checkpoint=osp.basename(pth),
            checkpoint_iter=CHECKPOINT_ITER,
            checkpoint_sha256=_sha256(pth),
            checkpoint_keys=sorted(ckpt),
            cpd_hook_keys=sorted(ckpt['cpd_hook']),
            cpd_hook_step=int(ckpt['cpd_hook']['step']),
            written_by=dict(
                commit=COMMIT,
                mmcpd_version=mmcpd.__version__,
                torch_version=torch.__version__,
                mmengine_version=mmengine.__version__,
                python_version=platform.python_version(),
                torch_num_threads=torch.get_num_threads(),
                script='tests/data/old_release/make_fixtures.py'),
            torch_version=torch.__version__,
            hook=HOOKS[shrink],
            runner=RUNNER,
            final=dict(
                iter=run1['final_iter'],
                history=run1['history'],
                removed=run1['removed'],
                deploy_shapes=run1['deploy_shapes'],
                deploy_meta=run1['deploy_meta']),
            iter_6_converted=_converted(pth, scratch, toy_runner),
            checks=dict(
                two_fresh_runs_identical=all(same.values()),
                resume_from_this_checkpoint_identical=all(
                    resume_same.values()),
                resume_from_this_checkpoint=resume_same),
        )
        with open(osp.join(args.out, name + '.json'), 'w') as f:
            json.dump(fixture, f, indent=1)
            f.write('\n')
        summary[shrink] = dict(deterministic=same, resume=resume_same,
                               size=os.path.getsize(pth))
    print(json.dumps(summary, indent=1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='cmd')
    one = sub.add_parser('train')
    one.add_argument('--shrink', choices=sorted(HOOKS), required=True)
    one.add_argument('--work-dir', required=True)
    one.add_argument('--resume-from')
    one.add_argument('--old-root', default=os.getcwd())
    parser.add_argument('--out', default='tests/data/old_release')
    parser.add_argument('--scratch', default='/tmp/fixture_runs')
    parser.add_argument('--old-root', default=os.getcwd(),
                        help='the old release checkout (default: cwd)')
    args = parser.parse_args()
    if args.cmd == 'train':
        train(args)
    else:
        args.out = osp.abspath(args.out)
        args.scratch = osp.abspath(args.scratch)
        make_all(args)


if __name__ == '__main__':
    main()
