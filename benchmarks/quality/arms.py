"""What the quality benchmark runs: three tasks and the arms compared on them.

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
    # the demo RetinaNet (configs/demo/retinanet-r18-w16_1xb16_digits-det
    # .py) on DigitsDetDataset; asked for by the `detection` group only
    det=dict(
        config='digits_det.py',
        wide_config=None,
        metric='coco/bbox_mAP',
        metric_name='bbox mAP',
        # CocoMetric reports 0-1; results and tables in points
        metric_scale=100.0,
        # the demo's schedule: 77.4 bbox mAP at 1000 iterations
        baseline_iters=1000,
        # the 2-seed evidence run of docs/demo.md fine-tuned for 300
        cpd_iters=300,
        shape=(1, 3, 64, 64),
        feature='neck',
        logits_cwd=True,
        # RetinaNet's class conv, shared by the levels (a recorded module
        # keeps its last call: the coarsest level) and the FPN's outputs
        score_map='bbox_head.retina_cls',
        levels=tuple(f'neck.fpn_convs.{i}' for i in range(3)),
        # the tables show each target's drop against the control
        vs_control=True),
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
    if 'score_map' in task:
        # detection: CWD tau 1, weight 1 per term (configs/_base_/
        # cpd_det.py; heavier weights lost 6-8 points in docs/demo.md)
        table.update(
            # one term on the head's class score map, as cpd_det.py ships
            cwd_score=[_cwd1(task['score_map'], 'cwd_score')],
            # one term per FPN level
            cwd_fpn=[
                _cwd1(level, f'cwd_p{i}')
                for i, level in enumerate(task['levels'])
            ],
            # the model's logits: a detector's class score maps (all
            # levels, where mmcpd records every call of the shared head)
            cwd_logits=[_cwd1(None, 'cwd_logits')])
    return table[arm]


def _cwd1(outputs: Optional[str], name: str) -> dict:
    """CWD at tau 1, weight 1 on ``outputs`` (None: the logits)."""
    loss = dict(type='CWDLoss', tau=1.0, loss_weight=1.0, name=name)
    if outputs is not None:
        loss['outputs'] = outputs
    return loss


#: Group -> (arms, speed-ups, tasks). ``none`` with hessian importance is
#: the reference of every group but ``method``, where it is an arm.
GROUPS = dict(
    method=(('none', 'kd', 'cwd', 'dist'), (2, 4, 8), ('cls', 'seg')),
    kd=(('kd_t4', 'kd_w3'), (4, ), ('cls', )),
    teacher=(('kd_wide', 'kd_cotrain'), (4, ), ('cls', )),
    when=(('kd_prune_only', 'kd_ramp'), (4, ), ('cls', )),
    feature=(('feat', 'feat_wide'), (4, ), ('cls', )),
    importance=(('taylor', 'magnitude', 'random'), (4, 8), ('cls', 'seg')),
    # which distillation for detection (issue 25): none, CWD on the class
    # score map (configs/_base_/cpd_det.py), on the FPN levels, on the
    # logits (every level's score map)
    detection=(('none', 'cwd_score', 'cwd_fpn', 'cwd_logits'), (2, 4),
               ('det', )),
)
#: What a plain ``run.py`` answers: which distillation, on cls and seg,
#: 78 runs (30 minutes end to end on 2 idle cores, the baselines
#: included); ``--groups all`` adds the importance scores and the settings
#: sweeps (138 runs, 49 minutes) and the detection group (27 runs of about
#: 2-3 minutes, its baseline 6 minutes).
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
    first = {CONTROL: 0, 'method': 1, 'detection': 1, 'importance': 2}
    # a task that none of the groups asks for runs nothing (not even its
    # control)
    tasks = [t for t in tasks if any(t in GROUPS[g][2] for g in groups)]
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
