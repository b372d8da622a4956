"""Where :class:`CPDRunner` and the config transform lived before 0.4.

Configs and work dirs written by earlier releases name
``runner_type = 'mmcpd.apis.config_transform.CPDRunner'``; they keep
working through this module. New code imports from :mod:`mmcpd.engine`.
"""
from mmcpd.engine.config_transform import (deploy_config,
                                           remove_from_optimizer,
                                           transform_config,
                                           wrap_for_distill)
from mmcpd.engine.cpd_fields import (CPD_KEY, DISTILL_KEY, RUNNER_TYPE,
                                     check_cpd_fields)
from mmcpd.engine.cpd_runner import CPDRunner

__all__ = [
    'CPD_KEY', 'CPDRunner', 'DISTILL_KEY', 'RUNNER_TYPE', 'check_cpd_fields',
    'deploy_config', 'remove_from_optimizer', 'transform_config',
    'wrap_for_distill'
]
