"""What the quality benchmark runs: two tasks and the arms compared on them.

An arm is one way to prune (or not) the task's trained baseline: a
distillation setting (``distill``: the DistillWrapper's arguments, None for
none) and an importance score, run at some FLOPs targets over the seeds.
Arms are grouped by the question they answer; a group's reference arm (run
in the ``method`` group) is shown next to it in the tables.
"""
from typing import Dict, List, Optional

#: FLOPs speed-ups and the CPDHook targets (fraction of FLOPs removed).
SPEEDUPS = {2: 0.5, 4: 0.75, 8: 0.875}
SEEDS = (0, 1, 2)
#: The arm that fine-tunes the baseline without pruning.
CONTROL = 'control'
#: The teacher of the ``wide`` arms: the baseline at twice the width,
#: trained once like the baseline.
WIDE = 'wide'

TASKS = dict(
    cls=dict(
        config='digits_cls.py',
        wide_config='digits_cls_wide.py',
        metric='accuracy/top1',
        metric_name='top-1 (%)',
        baseline_iters=400,
        cpd_iters=200,
        shape=(1, 3, 16, 16),
        # the demo ResNet's last stage: CWD and feature terms
        feature='backbone.layer4',
        logits_cwd=False),
    seg=dict(
        config='digits_seg.py',
        wide_config=None,
        metric='mIoU',
        metric_name='mIoU',
        # the UNet learns one digit class after another: 800 iterations
        # give 36.6 mIoU, 2000 give 73.4-74.3 (configs/digits_seg.py)
        baseline_iters=2000,
        cpd_iters=200,
        shape=(1, 3, 32, 32),
        feature='backbone',
        logits_cwd=True),
)


def _kd(tau=1.0, weight=1.0, **extra) -> dict:
    return dict(type='KDLoss', tau=tau, loss_weight=weight, **extra)


def _losses(task: dict, arm: str, iters: int) -> Optional[List[dict]]:
    """The ``distill_losses`` of an arm on a task; None: no distillation."""
    feature = task['feature']
    cwd = dict(type='CWDLoss', tau=4.0, loss_weight=3.0)
    if not task['logits_cwd']:
        # CWD normalises over positions: on a classifier's features
        cwd['outputs'] = feature
    table = dict(
        none=None,
        kd=[_kd()],
        cwd=[cwd],
        dist=[
            dict(
                type='DISTLoss',
                beta=1.0,
                gamma=1.0,
                tau=1.0,
                loss_weight=1.0)
        ],
        kd_t4=[_kd(tau=4.0)],
        kd_w3=[_kd(weight=3.0)],
        kd_wide=[_kd()],
        kd_cotrain=[_kd()],
        # pruning runs over the first half of the iterations
        kd_prune_only=[_kd(weight_schedule=dict(end=iters // 2))],
        kd_ramp=[_kd(weight_schedule=dict(end=iters, ramp='linear'))],
        feat=[dict(type='MSELoss', outputs=feature)],
        feat_wide=[dict(type='MSELoss', outputs=feature)],
    )
    return table[arm]


#: Group -> (arms, speed-ups, tasks). ``none`` with hessian importance is
#: the reference of every group but ``method``, where it is an arm.
GROUPS = dict(
    method=(('none', 'kd', 'cwd', 'dist'), (2, 4, 8), ('cls', 'seg')),
    kd=(('kd_t4', 'kd_w3'), (4, ), ('cls', )),
    teacher=(('kd_wide', 'kd_cotrain'), (4, ), ('cls', )),
    when=(('kd_prune_only', 'kd_ramp'), (4, ), ('cls', )),
    feature=(('feat', 'feat_wide'), (4, ), ('cls', )),
    importance=(('taylor', 'magnitude', 'random'), (4, 8), ('cls', 'seg')),
)
#: What a plain ``run.py`` answers: which distillation, on both tasks,
#: 78 runs (30 minutes end to end on 2 idle cores, the baselines
#: included); ``--groups all`` adds the importance scores and the settings
#: sweeps (138 runs, 49 minutes).
DEFAULT_GROUPS = ('method', )
#: Arms compared with each group's arms in its table.
REFERENCES = dict(
    kd=('none', 'kd'),
    teacher=('none', 'kd'),
    when=('none', 'kd'),
    feature=('none', 'kd'),
    importance=('none', ))
IMPORTANCES = ('taylor', 'magnitude', 'random')


def arm_settings(task_name: str, arm: str, iters: int) -> Dict:
    """Distillation and importance of ``arm`` on a task of ``iters``
    CPD iterations.

    Returns:
        dict: ``losses`` (list of loss configs or None), ``wide_teacher``
        (bool), ``train_teacher`` (the loaded model fine-tuned alongside,
        bool) and ``importance`` (str).
    """
    task = TASKS[task_name]
    plain = dict(wide_teacher=False, train_teacher=False)
    if arm == CONTROL:
        return dict(plain, losses=None, importance=None)
    if arm in IMPORTANCES:
        return dict(plain, losses=None, importance=arm)
    return dict(
        losses=_losses(task, arm, iters),
        wide_teacher=arm.endswith('_' + WIDE),
        train_teacher=arm.endswith('_cotrain'),
        importance='hessian')


def plan(groups, tasks, seeds) -> List[Dict]:
    """Every run of the chosen groups, tasks and seeds, once each: dicts
    with ``task``, ``arm``, ``speedup`` (None for the control) and
    ``seed``. Ordered so that a partial benchmark answers most: seed by
    seed, the control first, then the method comparison at 4x, 8x and 2x
    (pruning at 2x loses little, so methods separate least there), the
    importance scores, the settings sweeps."""
    order = {None: 0, 4: 1, 8: 2, 2: 3}
    first = {CONTROL: 0, 'method': 1, 'importance': 2}
    runs = []
    for seed in seeds:
        for task in tasks:
            mine = [(CONTROL,
                     dict(task=task, arm=CONTROL, speedup=None, seed=seed))]
            for group in groups:
                arms, speedups, group_tasks = GROUPS[group]
                if task not in group_tasks:
                    continue
                for speedup in speedups:
                    for arm in arms:
                        run = dict(task=task, arm=arm, speedup=speedup,
                                   seed=seed)
                        if all(run != r for _, r in mine):
                            mine.append((group, run))
            mine.sort(key=lambda gr: (first.get(gr[0], 3),
                                      order[gr[1]['speedup']]))
            runs += [run for _, run in mine]
    return runs


def run_name(run: Dict) -> str:
    """File name stem of a run's cached result."""
    speed = 'control' if run['speedup'] is None else f"x{run['speedup']}"
    return f"{run['task']}_{run['arm']}_{speed}_seed{run['seed']}"
