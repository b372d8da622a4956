"""One rank of a 2-process CPU (gloo) CPD run with distillation.

A real MMPretrain ResNet-18 in a DistillWrapper (KD from the frozen
teacher), built by the CPDRunner and pruned by the CPDHook under
MMDistributedDataParallel. Run by ``python -m torch.distributed.run
--nproc_per_node 2`` with the work dir as argument; each rank writes what
it ended with to ``rank<k>.json`` there (see test_cpd_hook_ddp).
"""
import json
import os.path as osp
import sys

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmcpd.engine.cpd_runner import CPDRunner  # noqa: E402
from mmcpd.engine.hooks import CPDHook  # noqa: E402
from test_engine.test_cpd_hook_mmpretrain import (  # noqa: E402
    MODEL, runner_kwargs)


def _checksum(tensors) -> float:
    return sum(float(t.double().abs().sum()) for t in tensors
               if t.is_floating_point())


def main(work_dir: str) -> None:
    # as in ddp_worker.py: the `pytorch` launcher of mmengine 0.10.7 needs
    # CUDA, so the gloo group is started here
    torch.distributed.init_process_group('gloo')
    hook = dict(type='CPDHook', interval=2, target=0.3, num_steps=2,
                input_shape=(1, 3, 32, 32))
    runner = CPDRunner(
        model=dict(
            type='DistillWrapper',
            student=MODEL,
            distill_losses=[dict(type='KDLoss', tau=2.0)]),
        launcher='pytorch',
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
        cfg=dict(model_wrapper_cfg=dict(
            type='MMDistributedDataParallel', device_ids=None)),
        **runner_kwargs(work_dir, hook))
    runner.train()
    wrapper = runner.model.module
    cpd = next(h for h in runner.hooks if isinstance(h, CPDHook))
    in_optim = {
        id(p)
        for g in runner.optim_wrapper.optimizer.param_groups
        for p in g['params']
    }
    with open(osp.join(work_dir, f'rank{runner.rank}.json'), 'w') as f:
        json.dump(
            dict(
                world_size=runner.world_size,
                pruned_student=cpd.student is wrapper.student,
                removed={str(k): v for k, v in cpd.session.removed.items()},
                sparsity=cpd.session.history[-1]['sparsity'],
                # parameters: BN running statistics are per rank in DDP
                student=_checksum(wrapper.student.parameters()),
                # the teacher's buffers too: copied once, in eval mode
                teacher=_checksum(wrapper.teacher.state_dict().values()),
                teacher_copied=bool(wrapper._teacher_copied),
                teacher_in_optimizer=any(
                    id(p) in in_optim for p in wrapper.teacher.parameters()),
                loss_kd=float(
                    runner.message_hub.get_scalar('train/loss_kd').current())),
            f)


if __name__ == '__main__':
    main(sys.argv[1])
    # a group left to interpreter exit can abort a rank ('terminate
    # called without an active exception') after its work is done
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
