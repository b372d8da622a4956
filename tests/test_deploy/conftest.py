# The ResNet-18 models and checkpoints (plain, pruned, DistillWrapper) are
# shared with the loader's tests.
from tests.test_apis.conftest import (distill_cfg, distill_checkpoint,
                                      plain_checkpoint, pruned_checkpoint,
                                      resnet18_cfg, resnet18_pair)

__all__ = [
    'distill_cfg', 'distill_checkpoint', 'plain_checkpoint',
    'pruned_checkpoint', 'resnet18_cfg', 'resnet18_pair'
]
