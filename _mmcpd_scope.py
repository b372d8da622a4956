"""Let mmengine resolve ``mmcpd::`` config paths in every Python process.

mmengine accepts ``package::path`` in ``_base_`` only for the packages of
its table ``mmengine.config.utils.MODULE2PACKAGE``, and reads ``_base_``
before anything imports mmcpd; so MMPretrain's and MMSeg's own
``tools/train.py`` failed on ``'mmcpd::_base_/cpd_kd.py'`` with
"mmengine does not support to load mmcpd config".

mmcpd's install puts ``mmcpd-scope.pth`` into site-packages (see
``setup.py``); Python runs its one line, ``import _mmcpd_scope``, at start-up.
This module imports nothing heavy (no mmengine, no torch): it only waits
for ``mmengine.config.utils`` to be imported, whoever imports it, and then
adds ``'mmcpd'`` to the table. ``import mmcpd`` does the same, for
interpreters that have mmcpd on ``PYTHONPATH`` only.
"""
import sys
from importlib.abc import Loader, MetaPathFinder

#: The mmengine module that holds the table of config scopes.
TARGET = 'mmengine.config.utils'
SCOPE = 'mmcpd'


def register(module) -> None:
    """Add mmcpd to the config scopes of a loaded ``mmengine.config.utils``.

    Args:
        module (module): The loaded ``mmengine.config.utils``.
    """
    table = getattr(module, 'MODULE2PACKAGE', None)
    if isinstance(table, dict):
        table.setdefault(SCOPE, SCOPE)


class _RegisteringLoader(Loader):
    """mmengine's own loader, plus :func:`register` after it ran."""

    def __init__(self, loader: Loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        register(module)

    def __getattr__(self, name):
        # get_source, get_filename, ...: inspect and linecache use them
        return getattr(self.loader, name)


class ScopeFinder(MetaPathFinder):
    """Finds ``mmengine.config.utils`` as the other finders do and wraps
    its loader; every other module is left to the other finders."""

    def find_spec(self, fullname, path, target=None):
        if fullname != TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, 'exec_module'):
            spec.loader = _RegisteringLoader(spec.loader)
        return spec


def install() -> None:
    """Register now if mmengine's config utils are loaded, else on import;
    safe to call more than once."""
    if TARGET in sys.modules:
        register(sys.modules[TARGET])
        return
    if not any(isinstance(f, ScopeFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, ScopeFinder())


install()
