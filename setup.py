"""mmcpd: Comb, Prune, Distill structured pruning for OpenMMLab models."""
import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup


def get_version():
    namespace = {}
    with open(osp.join('mmcpd', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def add_mim_extension():
    """Put configs/, tools/ and model-index.yml under ``mmcpd/.mim/``.

    mmengine finds ``mmcpd::demo/x.py`` (``_base_`` entries,
    ``mmengine.hub.get_config``) in ``<installed mmcpd>/.mim/configs``, as
    for OpenMMLab's packages. Editable installs link them, builds copy them.
    """
    if 'develop' in sys.argv or 'editable_wheel' in sys.argv:
        mode = 'symlink'
    elif any(cmd in sys.argv for cmd in ('sdist', 'bdist_wheel', 'build')):
        mode = 'copy'
    else:
        return
    repo_path = osp.dirname(osp.abspath(__file__))
    mim_path = osp.join(repo_path, 'mmcpd', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for name in ('configs', 'tools', 'model-index.yml'):
        src = osp.join(repo_path, name)
        tar = osp.join(mim_path, name)
        if osp.islink(tar) or osp.isfile(tar):
            os.remove(tar)
        elif osp.isdir(tar):
            shutil.rmtree(tar)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim_path), tar)
        elif osp.isdir(src):
            shutil.copytree(src, tar)
        else:
            shutil.copyfile(src, tar)


add_mim_extension()
setup(
    name='mmcpd',
    version=get_version(),
    description='Comb, Prune, Distill: structured pruning with knowledge '
    'distillation for MMPretrain and MMSegmentation models',
    long_description=open('README.md').read() if osp.exists('README.md')
    else '',
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('tests', 'tests.*')),
    include_package_data=True,
    package_data={
        'mmcpd': [
            '.mim/configs/**/*.py', '.mim/tools/**/*.py', '.mim/tools/*.sh',
            '.mim/model-index.yml'
        ]
    },
    python_requires='>=3.8',
    install_requires=['mmengine>=0.10.0', 'numpy'],
    license='Apache License 2.0',
    zip_safe=False,
)
