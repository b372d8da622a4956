import json
import math
import os
import os.path as osp
import subprocess
import sys


def _run_two_ranks(worker: str, work_dir, *args) -> list:
    """Run ``worker`` (a file next to this one) on 2 gloo processes; the
    ``rank<k>.json`` each wrote."""
    here = osp.dirname(osp.abspath(__file__))
    root = osp.dirname(osp.dirname(here))
    env = dict(
        os.environ,
        OMP_NUM_THREADS='1',
        PYTHONPATH=root + os.pathsep + os.environ.get('PYTHONPATH', ''))
    proc = subprocess.run([
        sys.executable, '-m', 'torch.distributed.run', '--standalone',
        '--nproc_per_node', '2',
        osp.join(here, worker),
        str(work_dir), *args
    ],
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.load(open(work_dir / f'rank{r}.json')) for r in (0, 1)]
    assert ranks[0]['world_size'] == 2
    return ranks


def test_two_process_gloo_run_ends_with_identical_masks(tmp_path):
    ranks = _run_two_ranks('ddp_worker.py', tmp_path)
    assert ranks[0]['removed'] == ranks[1]['removed']
    assert ranks[0]['removed']  # something was pruned
    assert ranks[0]['sparsity'] >= 0.5
    assert abs(ranks[0]['weights'] - ranks[1]['weights']) < 1e-6
    assert (tmp_path / 'pruned_deploy.pth').exists()  # rank 0 wrote it
    for rank in ranks:  # cut, wrapped anew, trained on after the cut
        assert rank['wrapper'] == 'MMDistributedDataParallel'
        assert rank['ddp_params'] == rank['params'] < rank['full_params']
        assert len(rank['losses']) == 16
        assert all(math.isfinite(loss) for loss in rank['losses'])


def test_closed_latency_loop_under_ddp_measures_on_rank_0(tmp_path):
    """Rank 0 measures the candidates while the other ranks wait: every
    rank averages the scores first (the same collectives on all ranks),
    then takes rank 0's choice."""
    ranks = _run_two_ranks('ddp_worker.py', tmp_path, 'latency')
    assert ranks[0]['removed'] == ranks[1]['removed'] != {}
    assert abs(ranks[0]['weights'] - ranks[1]['weights']) < 1e-6
    ratio = ranks[0]['latency_ratio']
    assert ratio == ranks[1]['latency_ratio']
    assert abs(0.7 / ratio - 1) <= 0.03  # the measured target, met


def test_two_process_distillation_run_agrees_across_ranks(tmp_path):
    """CPDRunner + DistillWrapper + CPDHook under MMDDP, on ResNet-18."""
    ranks = _run_two_ranks('ddp_distill_worker.py', tmp_path)
    for rank in ranks:
        assert rank['pruned_student'] and rank['teacher_copied']
        assert not rank['teacher_in_optimizer']
        assert rank['sparsity'] >= 0.3
        assert rank['loss_kd'] > 0
    # the same units removed, and the same student and teacher weights
    assert ranks[0]['removed'] == ranks[1]['removed'] != {}
    assert abs(ranks[0]['student'] - ranks[1]['student']) < 1e-6 * abs(
        ranks[0]['student'])
    assert abs(ranks[0]['teacher'] - ranks[1]['teacher']) < 1e-6 * abs(
        ranks[0]['teacher'])
    assert (tmp_path / 'pruned_deploy.pth').exists()
