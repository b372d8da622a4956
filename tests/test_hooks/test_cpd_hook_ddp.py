import json
import os
import os.path as osp
import subprocess
import sys


def test_two_process_gloo_run_ends_with_identical_masks(tmp_path):
    worker = osp.join(osp.dirname(osp.abspath(__file__)), 'ddp_worker.py')
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    env = dict(os.environ, OMP_NUM_THREADS='1',
               PYTHONPATH=root + os.pathsep + os.environ.get('PYTHONPATH',
                                                              ''))
    proc = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--standalone',
         '--nproc_per_node', '2', worker, str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.load(open(tmp_path / f'rank{r}.json')) for r in (0, 1)]
    assert ranks[0]['world_size'] == 2
    assert ranks[0]['removed'] == ranks[1]['removed']
    assert ranks[0]['removed']  # something was pruned
    assert ranks[0]['sparsity'] >= 0.5
    assert abs(ranks[0]['weights'] - ranks[1]['weights']) < 1e-6
    assert (tmp_path / 'pruned_deploy.pth').exists()  # rank 0 wrote it
