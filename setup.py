"""mmcpd: Comb, Prune, Distill structured pruning for OpenMMLab models.

Besides the package, an install puts two things where mmengine looks:

- ``mmcpd/.mim/{configs,tools,model-index.yml}``: mmengine finds
  ``mmcpd::_base_/cpd_kd.py`` under ``<installed mmcpd>/.mim/configs``, as
  for OpenMMLab's own packages. A wheel (``pip install .``) copies them in;
  a development install (``pip install --no-use-pep517 -e .``, what
  ``tools/install.sh`` does) links them to the checkout.
- ``mmcpd-scope.pth`` in site-packages: Python runs ``import _mmcpd_scope``
  at start-up, which adds ``mmcpd`` to mmengine's table of config scopes
  when mmengine is imported, so that MMPretrain's and MMSeg's own tools read
  ``mmcpd::`` paths without importing mmcpd first (see ``_mmcpd_scope.py``).
"""
import os
import os.path as osp
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.develop import develop

ROOT = osp.dirname(osp.abspath(__file__))
#: What ``mmcpd/.mim`` holds, from the top of the checkout.
MIM_FILES = ('configs', 'tools', 'model-index.yml')
PTH_NAME = 'mmcpd-scope.pth'
# a no-op once the module is gone (a development install left behind)
PTH_LINE = ("import importlib.util; importlib.util.find_spec('_mmcpd_scope') "
            "and __import__('_mmcpd_scope')\n")


def get_version():
    namespace = {}
    with open(osp.join(ROOT, 'mmcpd', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def _write_pth(cmd, folder: str) -> str:
    path = osp.join(folder, PTH_NAME)
    if not cmd.dry_run:
        os.makedirs(folder, exist_ok=True)
        with open(path, 'w') as f:
            f.write(PTH_LINE)
    return path


class BuildPy(build_py):
    """Copy configs/, tools/ and model-index.yml into ``mmcpd/.mim`` of the
    build (never into the checkout), and the ``.pth`` next to the
    packages."""

    def run(self):
        super().run()
        mim = osp.join(self.build_lib, 'mmcpd', '.mim')
        for name in MIM_FILES:
            src, dst = osp.join(ROOT, name), osp.join(mim, name)
            if osp.isdir(src):
                self.copy_tree(src, dst, preserve_symlinks=False)
            else:
                self.mkpath(mim)
                self.copy_file(src, dst)
        _write_pth(self, self.build_lib)


class Develop(develop):
    """Link ``mmcpd/.mim`` to the checkout and install the ``.pth``."""

    def run(self):
        super().run()
        mim = osp.join(ROOT, 'mmcpd', '.mim')
        os.makedirs(mim, exist_ok=True)
        for name in MIM_FILES:
            link = osp.join(mim, name)
            if osp.islink(link) or osp.isfile(link):
                os.remove(link)
            elif osp.isdir(link):  # a copy that an old build left here
                shutil.rmtree(link)
            os.symlink(osp.relpath(osp.join(ROOT, name), mim), link)
        _write_pth(self, self.install_dir)


setup(
    name='mmcpd',
    version=get_version(),
    description='Comb, Prune, Distill: structured pruning with knowledge '
    'distillation for MMPretrain and MMSegmentation models',
    long_description=open(osp.join(ROOT, 'README.md')).read()
    if osp.exists(osp.join(ROOT, 'README.md')) else '',
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('tests', 'tests.*')),
    py_modules=['_mmcpd_scope'],
    cmdclass=dict(build_py=BuildPy, develop=Develop),
    python_requires='>=3.8',
    install_requires=['mmengine>=0.10.0', 'numpy'],
    license='Apache License 2.0',
    zip_safe=False,
)
