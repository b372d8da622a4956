"""random_model's init probe leaves out a backbone's ``pretrained`` path
(DetectoRS' RFP ResNet loads it in ``init_weights``): nothing is
downloaded, the checks need no checkpoint."""
from mmengine.model import BaseModule
from torch import nn

from mmcpd.testing.random_init import positive_by_init


class Pretrained(BaseModule):

    def __init__(self):
        super().__init__()
        self.pretrained = 'torchvision://resnet50'
        self.conv = nn.Conv2d(3, 4, 1)

    def init_weights(self):
        if isinstance(self.pretrained, str):
            raise AssertionError('would download the checkpoint')
        super().init_weights()


def test_pretrained_path_not_loaded():
    model = Pretrained()
    positive_by_init(model)
    assert model.pretrained == 'torchvision://resnet50'  # the model's own
