"""The two fields a CPD base config sets, and the check that a runner
applied them.

``cpd`` (the CPDHook's settings, :mod:`mmcpd.engine.cpd_settings`) and
``distill`` (the DistillWrapper's, :mod:`mmcpd.engine.config_transform`)
are applied by :class:`~mmcpd.engine.cpd_runner.CPDRunner`, which the bases
set as ``runner_type``. A plain mmengine ``Runner`` ignores them, so the
CPDHook checks before training that they were applied.
"""
from mmengine.model import is_model_wrapper

from mmcpd.models import DistillWrapper

CPD_KEY = 'cpd'
DISTILL_KEY = 'distill'
#: What the CPD base configs set as ``runner_type``.
RUNNER_TYPE = 'mmcpd.engine.cpd_runner.CPDRunner'


def check_cpd_fields(runner) -> None:
    """Fail if the runner left the config's ``distill`` or ``cpd`` unused.

    A plain mmengine ``Runner`` ignores fields it does not know: it would
    train without the teacher, or without pruning. Called by the CPDHook
    before training (a CPDHook in ``custom_hooks`` runs with any runner).

    Args:
        runner (Runner): The runner, before its first iteration.

    Raises:
        RuntimeError: ``distill`` is set but the model is no
            DistillWrapper, or ``cpd`` is set but the runner is not a
            :class:`CPDRunner`; the message says what to add.
    """
    cfg = getattr(runner, 'cfg', None) or {}
    fix = ('build the runner from `runner_type = '
           f"'{RUNNER_TYPE}'` (the CPD base configs set "
           "it) with `RUNNERS.build(cfg)`, as OpenMMLab's tools/train.py "
           'does, not with `Runner.from_cfg`')
    model = runner.model
    while is_model_wrapper(model):
        model = model.module
    if cfg.get(DISTILL_KEY, None) is not None and not isinstance(
            model, DistillWrapper):
        raise RuntimeError(
            f'the config sets `{DISTILL_KEY}`, but the model is a '
            f'{type(model).__name__}, not a DistillWrapper: it would train '
            f'without the teacher. To distil, {fix}; or set '
            f'`{DISTILL_KEY} = None`')
    if cfg.get(CPD_KEY, None) is not None and not getattr(
            runner, 'applies_cpd_fields', False):
        raise RuntimeError(
            f'the config sets `{CPD_KEY}`, but a {type(runner).__name__} '
            f'ignores it. To prune with these settings, {fix}; or set '
            f'`{CPD_KEY} = None` to prune with the CPDHook of '
            '`custom_hooks` only')
