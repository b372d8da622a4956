"""mmcpd: Comb, Prune, Distill for OpenMMLab models.

``import mmcpd`` registers mmcpd's hooks, models, datasets, importance scores
and distillation losses in mmengine's registries, so
``custom_imports=dict(imports=['mmcpd'])`` in a config is all a user needs.

The steps, one call each::

    result = mmcpd.comb_model(model, torch.randn(1, 3, 224, 224))  # groups
    spec, result = mmcpd.prune_model(model, inputs, ratio=0.3)  # physically
"""
from mmengine.config.utils import MODULE2PACKAGE

# `mmcpd::_base_/cpd_kd.py` in a config's `_base_`: an installed mmcpd adds
# its scope to mmengine's table in every interpreter (mmcpd-scope.pth, see
# _mmcpd_scope.py); with mmcpd only on PYTHONPATH, importing it does.
MODULE2PACKAGE.setdefault('mmcpd', 'mmcpd')

from mmcpd import datasets, distill, engine, models  # noqa: F401, E402
from mmcpd.apis.pruning import comb_model, prune_model  # noqa: E402
from mmcpd.prune.spec import PrunedSpec, apply_spec  # noqa: E402
from mmcpd.utils.checkpoint import add_mmengine_safe_globals  # noqa: E402
from mmcpd.version import __version__  # noqa: E402

# torch >= 2.6 loads with weights_only=True: allow exactly the types that
# mmengine and mmcpd write into checkpoints (resume and load_from).
add_mmengine_safe_globals()

__all__ = [
    '__version__', 'comb_model', 'prune_model', 'PrunedSpec', 'apply_spec'
]
