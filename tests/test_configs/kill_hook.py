"""A hook that kills its own process with SIGKILL after the iteration named
by ``MMCPD_TEST_KILL_AT`` (unset: never): a crash at a known point, for the
resume tests of tests/test_configs/test_work_dir_config.py."""
import os
import signal

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

KILL_AT = 'MMCPD_TEST_KILL_AT'


@HOOKS.register_module()
class KillAtIter(Hook):
    """SIGKILL after iteration ``$MMCPD_TEST_KILL_AT`` (1-based)."""
    priority = 'LOWEST'  # after the checkpoint of that iteration, if any

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        at = os.environ.get(KILL_AT)
        if at and runner.iter + 1 == int(at):
            os.kill(os.getpid(), signal.SIGKILL)
