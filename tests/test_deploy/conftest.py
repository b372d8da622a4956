import pytest
import torch

from mmcpd.apis import build_model_from_cfg
from mmcpd.utils.config import load_config

# The ResNet-18 models and checkpoints (plain, pruned, DistillWrapper) are
# shared with the loader's tests.
from tests.test_apis.conftest import (distill_cfg, distill_checkpoint,
                                      plain_checkpoint, pruned_checkpoint,
                                      resnet18_cfg, resnet18_pair)

__all__ = [
    'distill_cfg', 'distill_checkpoint', 'plain_checkpoint',
    'pruned_checkpoint', 'resnet18_cfg', 'resnet18_pair', 'resnet18'
]


@pytest.fixture(scope='module')
def resnet18():
    """A ResNet-18 classifier (random weights, eval mode), per module."""
    torch.manual_seed(0)
    return build_model_from_cfg(
        load_config('mmpretrain::resnet/resnet18_8xb32_in1k.py')).eval()
