"""One rank of the 2-process CPU (gloo) CPDHook run; see test_cpd_hook_ddp.

Run by ``python -m torch.distributed.run --nproc_per_node 2`` with the work
dir as argument (and ``latency`` for a measured latency target, the closed
loop measuring on rank 0); each rank writes its masks and a weight checksum
to ``rank<k>.json`` there.
"""
import datetime
import json
import os.path as osp
import sys

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import mmcpd.engine.hooks  # noqa: E402,F401
from mmcpd.engine.hooks import CPDHook  # noqa: E402
from test_engine.toy_runner import ToyClassifier, make_runner  # noqa: E402
from test_prune.toy import linear_table  # noqa: E402


def main(work_dir: str, target: str = 'params') -> None:
    # mmengine 0.10.7's `pytorch` launcher calls torch.cuda.set_device,
    # which fails without a GPU: start the gloo group here, the runner
    # then finds it initialised and uses it. Collectives that do not
    # match fail within a minute instead of hanging.
    torch.distributed.init_process_group(
        'gloo', timeout=datetime.timedelta(seconds=60))
    hook = dict(type='CPDHook', interval=4, target=0.5, num_steps=3,
                input_shape=(1, 3, 16, 16))
    if target == 'latency':
        full = sum(p.numel() for p in ToyClassifier().parameters())

        def measure(model):  # rank 0 only: what the table does not predict
            assert torch.distributed.get_rank() == 0
            return 0.4 + 0.6 * sum(
                p.numel() for p in model.parameters()) / full

        hook.update(metric='latency', target=0.3, round_to=1,
                    latency_table=linear_table(
                        ToyClassifier(), torch.randn(1, 3, 16, 16), 4),
                    closed_loop=dict(measure=measure, tol=0.03))
    runner = make_runner(
        work_dir,
        hook,
        max_iters=16,
        launcher='pytorch',
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
        cfg=dict(
            model_wrapper_cfg=dict(
                type='MMDistributedDataParallel', device_ids=None)))
    runner.train()
    cpd = next(h for h in runner.hooks if isinstance(h, CPDHook))
    weights = sum(
        float(p.double().abs().sum()) for p in cpd.student.parameters())
    # shrink='physical' (the default): the DDP wrapper was built anew
    # around the cut student, and trained it after the last prune step
    ddp_params = sum(p.numel() for p in runner.model.parameters())
    losses = runner.message_hub.get_scalar('train/loss').data[0].tolist()
    with open(osp.join(work_dir, f'rank{runner.rank}.json'), 'w') as f:
        json.dump(
            dict(
                removed={
                    str(k): v
                    for k, v in cpd.session.removed.items()
                },
                sparsity=cpd.session.history[-1]['sparsity'],
                world_size=runner.world_size,
                weights=weights,
                ddp_params=ddp_params,
                params=cpd.session.history[-1]['params'],
                latency_ratio=cpd.session.history[-1].get('latency_ratio'),
                full_params=cpd.session.history[0]['params'],
                wrapper=type(runner.model).__name__,
                losses=losses), f)


if __name__ == '__main__':
    main(*sys.argv[1:])
    # a group left to interpreter exit can abort a rank ('terminate
    # called without an active exception') after its work is done
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
