"""``venv_env.py`` makes a virtual environment that sees the running one's
packages, whether that is the system interpreter or a virtualenv.

``python -m venv --system-site-packages`` alone sees the base interpreter's
site-packages only, so a nested environment made from an activated
virtualenv missed everything installed there (test_upstream_tools.py then
failed with ``No module named 'mmengine'``).
"""
import os
import os.path as osp
import subprocess
import sys

import pytest

SCRIPT = osp.join(osp.dirname(osp.abspath(__file__)), 'venv_env.py')
PROBE = 'mmcpd_venv_probe'


def _base_python() -> str:
    python = getattr(sys, '_base_executable', None)
    if python and osp.isfile(python):
        return python
    name = f'python{sys.version_info.major}.{sys.version_info.minor}'
    return osp.join(sys.base_prefix, 'bin', name)


def _run(cmd, cwd) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    proc = subprocess.run([str(c) for c in cmd],
                          cwd=cwd,
                          env=environ,
                          capture_output=True,
                          text=True,
                          timeout=120)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    return proc


def _purelib(python, cwd) -> str:
    return _run([
        python, '-c', 'import sysconfig\n'
        "print(sysconfig.get_paths()['purelib'])"
    ], cwd).stdout.strip()


def _make(python, target, cwd) -> str:
    """``python venv_env.py target``: the new environment's python."""
    out = _run([python, SCRIPT, target], cwd).stdout.split()
    nested = osp.join(str(target), 'bin', 'python')
    assert out[-1] == nested and osp.isfile(nested)
    return nested


def _origin(python, name, cwd) -> str:
    """Where ``python`` finds the module ``name`` (not importing it)."""
    return _run([
        python, '-c', 'import importlib.util, os\n'
        f'print(os.path.realpath(importlib.util.find_spec({name!r}).origin))'
    ], cwd).stdout.strip()


def _a_site_package(python, cwd):
    """A top-level module in the site-packages of ``python``, or None."""
    names = _run([
        python, '-c', 'import pkgutil, site\n'
        'for m in pkgutil.iter_modules(site.getsitepackages()):\n'
        '    print(m.name)\n'
    ], cwd).stdout.split()
    names = [n for n in names if n.isidentifier() and n[0] != '_']
    for name in ('pytest', 'yaml', 'pip'):
        if name in names:
            return name
    return min(names, default=None)


def test_from_the_system_interpreter(tmp_path):
    base = _base_python()
    name = _a_site_package(base, tmp_path)
    if name is None:
        pytest.skip(f'nothing in the site-packages of {base}')
    nested = _make(base, tmp_path / 'nested', tmp_path)
    prefix = _run([nested, '-c', 'import sys; print(sys.prefix)'], tmp_path)
    assert prefix.stdout.strip() == str(tmp_path / 'nested')
    # what the base interpreter has, the new environment finds there too
    assert _origin(nested, name, tmp_path) == _origin(base, name, tmp_path)


def test_from_a_virtualenv(tmp_path):
    # a virtualenv that does not see the system's site-packages, with a
    # module of its own (where a user installs mmengine & co.)
    outer = tmp_path / 'outer'
    _run([_base_python(), '-m', 'venv', '--without-pip', outer], tmp_path)
    python = osp.join(outer, 'bin', 'python')
    site_packages = _purelib(python, tmp_path)
    assert site_packages.startswith(str(outer))
    with open(osp.join(site_packages, f'{PROBE}.py'), 'w') as f:
        f.write("VALUE = 42\nWHERE = 'outer'\n")
    # and a module that a .pth file adds, as an editable install does
    extra = tmp_path / 'editable'
    extra.mkdir()
    (extra / f'{PROBE}_editable.py').write_text('VALUE = 7\n')
    with open(osp.join(site_packages, 'editable.pth'), 'w') as f:
        f.write(f'{extra}\n')

    nested = _make(python, tmp_path / 'nested', tmp_path)
    code = (f'import {PROBE}, {PROBE}_editable\n'
            f'print({PROBE}.VALUE, {PROBE}_editable.VALUE)\n')
    proc = _run([nested, '-c', code], tmp_path)
    assert proc.stdout.split() == ['42', '7']

    # what is installed into the new environment shadows the outer copies
    own = _purelib(nested, tmp_path)
    assert own.startswith(str(tmp_path / 'nested'))
    with open(osp.join(own, f'{PROBE}.py'), 'w') as f:
        f.write("VALUE = 0\nWHERE = 'nested'\n")
    proc = _run([
        nested, '-c', f'import sys, {PROBE}\n'
        f'print({PROBE}.WHERE)\n'
        f'print(sys.path.index({own!r}) < sys.path.index({site_packages!r}))'
    ], tmp_path)
    assert proc.stdout.split() == ['nested', 'True']
