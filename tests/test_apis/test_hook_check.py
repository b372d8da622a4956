"""What CPDHook trains is what it deploys, on zoo models whose widths
Python code ties (``C // num_heads``): a real Runner, randomised weights,
the config's own optimizer, a prune step, more masked iterations."""
import warnings

import pytest
import torch

from mmcpd.api import comb_model
from mmcpd.apis import build_model_from_cfg
from mmcpd.apis.hook_check import check_hook_run
from mmcpd.comb import trace_groups
from mmcpd.prune.verify import randomize_model
from mmcpd.utils.config import load_config

SWIN = 'mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py'


def _config(path):
    cfg = load_config(path)
    if path == SWIN:  # windows larger than the small maps: pad them
        cfg.model.backbone.pad_small_map = True
    return cfg
VIT_UPERNET = 'mmseg::vit/vit_deit-s16_upernet_8xb2-80k_ade20k-512x512.py'


def test_verification_freezes_what_tracing_alone_would_prune():
    """The hook's comb (``comb_model``) freezes Swin's groups whose widths
    Python arithmetic ties; the tracer alone would prune them."""
    model = randomize_model(build_model_from_cfg(_config(SWIN)))
    x = torch.randn(1, 3, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        traced = {g.id for g in trace_groups(model, x).prunable}
        verified = comb_model(model, x)
    failed = [g for g in verified.groups if g.frozen and
              'failed verification' in g.frozen]
    assert failed and {g.id for g in failed} <= traced


@pytest.mark.parametrize('config,size', [(SWIN, 64), (VIT_UPERNET, 64)],
                         ids=['swin-t', 'vit-upernet'])
def test_hook_deploys_what_it_trained(config, size, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        run = check_hook_run(_config(config), size, iters=4,
                             work_dir=str(tmp_path))
    assert run['removed_units'] > 0
    assert run['sparsity'] >= 0.3
    assert run['ok'], f"deploy differs from masked: {run['diff']:.2e}"
