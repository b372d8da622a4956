"""What CPDHook trains is what it deploys, on zoo models whose widths
Python code ties (``C // num_heads``): a real Runner, randomised weights,
the config's own optimizer, a prune step, more masked iterations."""
import warnings

import pytest

from mmcpd.testing.hook_check import check_hook_run
from mmcpd.utils.config import load_config

SWIN = 'mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py'
VIT_UPERNET = 'mmseg::vit/vit_deit-s16_upernet_8xb2-80k_ade20k-512x512.py'
# grouped convs that keep other input columns per conv group
SHUFFLENET_V1 = 'mmpretrain::shufflenet_v1/shufflenet-v1-1x_16xb64_in1k.py'


def _config(path):
    cfg = load_config(path)
    if path == SWIN:  # windows larger than the small maps: pad them
        cfg.model.backbone.pad_small_map = True
    return cfg


# The comb follows Swin's `C // num_heads` (mmcpd.comb.sizes): its residual
# stream and heads are prunable, well past the 26% of the FLOPs that
# verification left when it had to catch them
@pytest.mark.parametrize('config,size,target', [(SWIN, 64, 0.4),
                                                (VIT_UPERNET, 64, 0.3),
                                                (SHUFFLENET_V1, 64, 0.3)],
                         ids=['swin-t', 'vit-upernet', 'shufflenet-v1'])
def test_hook_deploys_what_it_trained(config, size, target, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        run = check_hook_run(_config(config), size, iters=4, target=target,
                             work_dir=str(tmp_path))
    assert run['removed_units'] > 0
    assert run['sparsity'] >= target
    if config == SWIN:  # no group needed verification to be caught
        assert run['failed_verification'] == 0
    assert run['ok'], f"deploy differs from masked: {run['diff']:.2e}"


#: Small zoo detectors (ResNet-18 backbones): a two-stage one, whose comb
#: runs the RoI head on fixed proposals, and the DETR family, whose
#: transformer stream prunes through the positional table's selection.
R18_FPN = {'model.backbone.depth': 18, 'model.backbone.init_cfg': None,
           'model.neck.in_channels': [64, 128, 256, 512]}
DETECTORS = {
    'mask-rcnn': ('mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py', R18_FPN),
    'detr': ('mmdet::detr/detr_r50_8xb2-150e_coco.py', {
        'model.backbone.depth': 18,
        'model.backbone.init_cfg': None,
        'model.neck.in_channels': [512]
    }),
}


@pytest.mark.parametrize('name', list(DETECTORS))
def test_detectors_deploy_what_they_trained(name, tmp_path):
    path, options = DETECTORS[name]
    cfg = load_config(path)
    cfg.merge_from_dict(options)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        run = check_hook_run(cfg, 64, iters=4, target=0.3,
                             work_dir=str(tmp_path))
    assert run['removed_units'] > 0 and run['sparsity'] >= 0.3
    assert run['failed_verification'] == 0
    assert run['ok'], f"deploy differs from masked: {run['diff']:.2e}"
