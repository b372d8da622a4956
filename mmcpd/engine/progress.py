"""Quiet runs: a progress bar on the console, the full log in the work dir.

mmengine's runner logs to the console and to
``<work_dir>/<timestamp>/<timestamp>.log`` at the config's ``log_level``.
:class:`QuietCPDRunner` keeps that file at ``log_level`` (INFO: the config,
every logged iteration, the CPDHook's prune steps and tables, warnings) and
shows only errors on the console, where :class:`ProgressBarHook` draws one
bar per run instead.
"""
import logging
from contextlib import contextmanager
from typing import Iterator

from mmengine.hooks import Hook

from mmcpd.engine.cpd_runner import CPDRunner


def console_level(logger: logging.Logger, level: int) -> None:
    """Show only records of ``level`` and above on the console handlers of
    ``logger``; its file handlers keep their level."""
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler):
            handler.setLevel(max(handler.level, level))


class _CurrentLoggerHandler(logging.Handler):
    """Hands records to mmengine's current logger: into the run's log file,
    and to the console at the console handler's level."""

    def emit(self, record: logging.LogRecord) -> None:
        from mmengine.logging import MMLogger
        MMLogger.get_current_instance().handle(record)


@contextmanager
def warnings_to_log(enabled: bool = True) -> Iterator[None]:
    """Within the context, Python warnings (``warnings.warn``) go to
    mmengine's current logger instead of stderr.

    Args:
        enabled (bool): False leaves warnings as they are. Defaults to True.
    """
    if not enabled:
        yield
        return
    logger = logging.getLogger('py.warnings')
    handler, propagate = _CurrentLoggerHandler(), logger.propagate
    logging.captureWarnings(True)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
        logging.captureWarnings(False)


class QuietCPDRunner(CPDRunner):
    """A :class:`~mmcpd.engine.cpd_runner.CPDRunner` whose console shows
    errors only; the log file has everything."""

    def build_logger(self, log_level='INFO', log_file=None, **kwargs):
        """mmengine's logger, its console handler set to ERROR."""
        logger = super().build_logger(log_level, log_file, **kwargs)
        console_level(logger, logging.ERROR)
        return logger


class ProgressBarHook(Hook):
    """A tqdm bar over the training iterations: the loss and, with a
    CPDHook, its prune steps and how much of the metric is removed.

    Args:
        desc (str): The bar's label. Defaults to ``'train'``.
    """

    priority = 'VERY_LOW'

    def __init__(self, desc: str = 'train'):
        self.desc = desc
        self._bar = None
        self._cpd = None

    def before_train(self, runner) -> None:
        from tqdm import tqdm
        self._cpd = next((h for h in runner.hooks
                          if type(h).__name__ == 'CPDHook'), None)
        self._bar = tqdm(
            total=runner.max_iters,
            initial=runner.iter,
            desc=self.desc,
            unit='it',
            dynamic_ncols=True)

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        if self._bar is None:
            return
        postfix = {}
        loss = outputs.get('loss') if isinstance(outputs, dict) else None
        if loss is not None:
            postfix['loss'] = f'{float(loss.detach()):.3f}'
        cpd = self._cpd
        if cpd is not None and getattr(cpd, 'schedule', None) is not None:
            last = cpd.history[-1] if cpd.history else {}
            postfix['prune step'] = f'{cpd.step}/{cpd.schedule.num_steps}'
            if 'sparsity' in last:
                postfix[f'{cpd.metric} removed'] = f"{last['sparsity']:.0%}"
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(1)

    def after_train(self, runner) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
