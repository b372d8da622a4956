"""mmcpd.utils.config: example input shapes of zoo configs."""
from mmcpd.utils.config import input_shape, load_config


def test_input_channels_follow_the_preprocessor_mean():
    lenet = load_config('mmpretrain::lenet/lenet5_mnist.py')  # MNIST: gray
    assert input_shape(lenet, 32) == (1, 1, 32, 32)
    assert input_shape(lenet) == (1, 1, 32, 32)
    resnet = load_config('mmpretrain::resnet/resnet18_8xb32_in1k.py')
    assert input_shape(resnet, 64) == (1, 3, 64, 64)
