"""mmcpd: Comb, Prune, Distill for OpenMMLab models.

``import mmcpd`` registers mmcpd's hooks, models, datasets, importance scores
and distillation losses in mmengine's registries, so
``custom_imports=dict(imports=['mmcpd'])`` in a config is all a user needs.

The steps, one call each::

    result = mmcpd.comb(model, torch.randn(1, 3, 224, 224))  # coupled groups
    spec, result = mmcpd.prune(model, inputs, ratio=0.3)   # physically
"""
import types

from mmengine.config.utils import MODULE2PACKAGE

# `mmcpd::_base_/cpd_kd.py` in a config's `_base_` resolves once mmcpd is
# imported (tools/train.py imports it before reading the config).
MODULE2PACKAGE.setdefault('mmcpd', 'mmcpd')

from . import datasets, distill, hooks, models  # noqa: F401 (registers)
from . import comb as _comb_package
from . import prune as _prune_package
from .api import comb as _comb
from .api import prune as _prune
from .prune.spec import PrunedSpec, apply_spec
from .utils.checkpoint import add_mmengine_safe_globals
from .version import __version__

# torch >= 2.6 loads with weights_only=True: allow exactly the types that
# mmengine and mmcpd write into checkpoints (resume and load_from).
add_mmengine_safe_globals()


class _CallableModule(types.ModuleType):
    """Lets ``mmcpd.comb(...)`` and ``mmcpd.prune(...)`` be called while
    ``mmcpd.comb`` / ``mmcpd.prune`` stay the packages of those steps."""

    def __call__(self, *args, **kwargs):
        return self._entry(*args, **kwargs)


for _package, _entry in ((_comb_package, _comb), (_prune_package, _prune)):
    _package.__class__ = _CallableModule
    _package._entry = staticmethod(_entry).__func__
    _package.__call__ = _entry

comb = _comb_package
prune = _prune_package

__all__ = ['__version__', 'comb', 'prune', 'PrunedSpec', 'apply_spec']
