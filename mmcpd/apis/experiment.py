"""Short experiments on a config: rescale it, train it, evaluate a checkpoint.

The pieces that ``tools/demo.py`` and ``benchmarks/quality/run.py``
share: run an OpenMMLab config for a given number of iterations (its LR
schedule and the CPDHook scaled along), evaluate a plain or pruned
checkpoint on the config's val split, and read back the scalars that the
runner logged.
"""
import copy
import glob
import json
import os.path as osp
import time
from typing import Dict, List, Optional

from mmengine.config import Config
from mmengine.runner import Runner

from mmcpd.engine.cpd_fields import CPD_KEY
from mmcpd.engine.cpd_runner import CPDRunner
from mmcpd.engine.cpd_settings import is_cpd_hook
from mmcpd.engine.progress import ProgressBarHook, QuietCPDRunner
from mmcpd.models.loading import init_model


def config_dir() -> str:
    """``configs/`` of the installed mmcpd (``mmcpd/.mim/configs``), else
    of the source checkout."""
    package = osp.dirname(osp.dirname(osp.abspath(__file__)))
    mim = osp.join(package, '.mim', 'configs')
    if osp.isdir(osp.join(mim, 'demo')):
        return mim
    return osp.join(osp.dirname(package), 'configs')


def find_cpd_hook(cfg: Config) -> Optional[dict]:
    """The CPDHook settings of ``cfg``: its ``cpd`` field, else the
    CPDHook entry of ``cfg.custom_hooks``, else None. Changing the dict
    changes the config."""
    if cfg.get(CPD_KEY, None) is not None:
        return cfg[CPD_KEY]
    for hook in cfg.get('custom_hooks', None) or []:
        if is_cpd_hook(hook):
            return hook
    return None


def scale_schedule(cfg: Config,
                   iters: int,
                   log_interval: Optional[int] = None) -> Config:
    """Make ``cfg`` run ``iters`` iterations; changed in place.

    The LR schedulers' ``begin``/``end``/``T_max`` scale by
    ``iters / max_iters``; validation runs once, after training (by the
    caller); one checkpoint is saved at the end; a CPDHook prunes over the
    first half of the run (:func:`prune_over`) and the second half
    fine-tunes.

    Args:
        cfg (Config): An iteration-based training config.
        iters (int): Training iterations.
        log_interval (int, optional): Logger interval. None logs about
            four times (at most every 50 iterations).

    Returns:
        Config: ``cfg``.
    """
    old = int(cfg.train_cfg.max_iters)
    factor = iters / old
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters + 1
    cfg.default_hooks.checkpoint.interval = iters
    cfg.default_hooks.logger.interval = log_interval or max(
        1, min(50, iters // 4))
    for sched in cfg.param_scheduler:
        begin = int(round(sched.get('begin', 0) * factor))
        if 'begin' in sched:
            sched.begin = begin
        if 'end' in sched:
            sched.end = max(begin + 1, int(round(sched.end * factor)))
        if 'T_max' in sched:
            sched.T_max = max(1, int(round(sched.T_max * factor)))
    hook = find_cpd_hook(cfg)
    if hook is not None:
        prune_over(hook, iters)
    return cfg


def prune_over(hook: dict, iters: int, fraction: float = 0.5) -> dict:
    """Make a CPDHook config prune over the first ``fraction`` of ``iters``
    iterations, in at most its ``num_steps`` steps (default 10); changed in
    place.

    Args:
        hook (dict): The CPDHook config (``cfg.cpd`` or a custom hook).
        iters (int): Training iterations.
        fraction (float): Fraction of them that prunes. Defaults to 0.5.

    Returns:
        dict: ``hook``.
    """
    window = max(1, int(iters * fraction))
    steps = min(int(hook.get('num_steps') or 10), window)
    hook['num_steps'] = steps
    hook['interval'] = max(1, window // steps)
    return hook


def prepare_config(path: str,
                   work_dir: str,
                   iters: int,
                   log_level: str = 'INFO',  # WARNING writes no scalars.json
                   log_interval: Optional[int] = None) -> Config:
    """Load a config to run ``iters`` iterations in ``work_dir``, on one
    process, without the visualization hook; several runs of one process
    log to their own ``vis_data``."""
    cfg = Config.fromfile(path)
    cfg.work_dir = work_dir
    cfg.launcher = 'none'
    cfg.log_level = log_level
    cfg.default_hooks.pop('visualization', None)
    if cfg.get('visualizer', None) is not None:
        # A visualizer is a named global instance: with the config's fixed
        # name, a second run in this process would log to the first one's
        # vis_data. Without it, the runner names it after the experiment.
        cfg.visualizer.pop('name', None)
    return scale_schedule(cfg, iters, log_interval)


def shrink_data(cfg: Config, batch_size: int, train_samples: int,
                val_samples: int) -> Config:
    """Small batches and few samples (smoke tests); ``cfg`` changed in
    place, the test split set to the val split."""
    for loader, num in (('train_dataloader', train_samples),
                        ('val_dataloader', val_samples)):
        cfg[loader].batch_size = batch_size
        dataset = cfg[loader].dataset
        if 'num_samples' in dataset:  # canvases are made on the fly
            dataset.num_samples = num
        else:  # mmengine's BaseDataset takes the first `indices` items
            dataset.indices = num
    cfg.test_dataloader = cfg.val_dataloader
    return cfg


def train(cfg: Config, verbose: bool = True, desc: str = 'train') -> str:
    """Train with ``cfg`` by :class:`CPDRunner` (``distill`` wraps the
    model, ``cpd`` adds the CPDHook).

    Args:
        cfg (Config): An iteration-based training config.
        verbose (bool): Log to the console as mmengine does. False shows a
            progress bar instead and only warnings; the log file in the
            work dir has everything either way. Defaults to True.
        desc (str): The label of the progress bar. Defaults to ``'train'``.

    Returns:
        str: The path of the last checkpoint.
    """
    if verbose:
        runner = CPDRunner.from_cfg(cfg)
    else:
        runner = QuietCPDRunner.from_cfg(cfg)
        runner.register_hook(ProgressBarHook(desc))
    runner.train()
    return osp.join(cfg.work_dir, f'iter_{cfg.train_cfg.max_iters}.pth')


def log_file(work_dir: str) -> Optional[str]:
    """The log file of the latest run in ``work_dir``, or None."""
    files = sorted(glob.glob(osp.join(work_dir, '*', '*.log')))
    return files[-1] if files else None


def evaluate(cfg: Config,
             checkpoint: str,
             work_dir: str,
             verbose: bool = True) -> Dict[str, float]:
    """Val metrics of the (plain, pruned or distilled) model in a checkpoint.

    Args:
        cfg (Config): The config of the (unpruned) model and its val data.
        checkpoint (str): Any checkpoint :func:`init_model` loads.
        work_dir (str): Where the evaluation runner logs (warnings only).
        verbose (bool): Show the warnings on the console too. Defaults to
            True.

    Returns:
        dict: Metric name to value.
    """
    model = init_model(cfg, checkpoint, device='cpu')
    if verbose:
        runner_cls = Runner
    else:
        runner_cls = QuietCPDRunner
    runner = runner_cls(
        model=model,
        work_dir=work_dir,
        val_dataloader=copy.deepcopy(cfg.val_dataloader),
        val_cfg=dict(type='ValLoop'),
        val_evaluator=copy.deepcopy(cfg.val_evaluator),
        default_scope=cfg.default_scope,
        log_level='WARNING',
        default_hooks=dict(logger=None, checkpoint=None),
        experiment_name=f'eval_{int(time.time() * 1e3)}')
    metrics = runner.val()
    return {k: float(v) for k, v in metrics.items()}


def read_scalars(work_dir: str) -> List[dict]:
    """The scalars of the latest run in ``work_dir``, one dict per logged
    iteration (``vis_data/scalars.json`` of mmengine's LocalVisBackend).

    Raises:
        FileNotFoundError: No run in ``work_dir`` logged scalars (the
            config's visualizer has no LocalVisBackend).
    """
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                      'scalars.json')))
    if not files:
        raise FileNotFoundError(
            f'no vis_data/scalars.json under {work_dir}: the config should '
            "keep a `dict(type='LocalVisBackend')` in `vis_backends`")
    with open(files[-1]) as f:
        return [json.loads(line) for line in f if line.strip()]
