"""The contract over zoo models, every parameter and buffer randomised,
random units removed: masked == pruned == rebuilt == ONNX, the comb's FLOPs
== mmengine's (2%), and after CPDHook training, deployed == masked.

Small configs and inputs keep it fast; ``tools/analysis/coverage.py`` runs
the same chain over the large models at full size (see docs/coverage.md).
"""
import pytest

from mmcpd.testing.coverage import CHECKS, check_model

# (config, input size, CPDHook iterations of the `trained` check: the
# larger models skip it here, tests/test_apis/test_hook_check.py and the
# coverage tool run it)
ZOO = [
    ('mmpretrain::resnet/resnet18_8xb32_in1k.py', 32, 4),
    ('mmpretrain::mobilenet_v2/mobilenet-v2_8xb32_in1k.py', 32, 4),
    ('mmpretrain::resnext/resnext50-32x4d_8xb32_in1k.py', 32, 0),
    ('mmpretrain::deit/deit-tiny_4xb256_in1k.py', 32, 4),
    ('mmpretrain::convnext/convnext-tiny_32xb128_in1k.py', 32, 0),
    ('mmseg::pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py', 96, 4),
    ('mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py', 64, 0),
]


@pytest.mark.parametrize('config,size,iters', ZOO, ids=[z[0] for z in ZOO])
def test_zoo_model_passes_every_check(config, size, iters):
    # widths by the default rule; latency is timed by test_coverage.py
    rec = check_model(config, ratio=0.3, size=size, train_iters=iters,
                      latency_runs=0)
    checks = CHECKS if iters else CHECKS[:-1]
    failed = [c for c in checks if not rec['checks'].get(c)]
    assert not failed, f"{config}: {failed} failed: {rec.get('error')}"
    assert rec['params_pruned'] < rec['params']
    assert rec['flops_pruned'] < rec['flops']
    assert rec['prunable_groups'] > 0
