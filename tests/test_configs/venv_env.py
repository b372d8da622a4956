"""A virtual environment that sees what the running environment sees.

``python -m venv --system-site-packages`` gives the new environment the
site-packages of the *base* interpreter only: started from an activated
virtualenv (the usual place to install mmcpd and its dependencies), the new
one sees none of that virtualenv's packages. :func:`make_venv` creates the
environment with the running interpreter and writes a ``.pth`` file into its
site-packages that adds the running environment's site-packages (and user
site, where enabled) that the new one does not see already. Those are added
with :func:`site.addsitedir`, so their own ``.pth`` files (editable installs)
count too, and after the new environment's own site-packages: what is
installed there shadows the running environment's copies.

Run as a script to create one::

    python tests/test_configs/venv_env.py TARGET
"""
import json
import os
import site
import subprocess
import sys

PTH = 'venv_env_outer.pth'

# executed by the new environment's ``site`` while it reads its own
# site-packages: the added folders (and what their .pth files add) go after
# everything already on sys.path, however those .pth files insert them
_ADD = '''import site, sys
old = list(sys.path)
for path in {paths!r}:
    site.addsitedir(path)
sys.path[:] = ([p for p in old if p in sys.path]
               + [p for p in sys.path if p not in old])
'''


def _environ() -> dict:
    return {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}


def _key(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))


def outer_site_dirs() -> list:
    """The site-packages folders of the running interpreter."""
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return [d for d in dirs if os.path.isdir(d)]


def _ask(python: str, code: str):
    proc = subprocess.run([python, '-c', code],
                          env=_environ(),
                          capture_output=True,
                          text=True,
                          check=True)
    return json.loads(proc.stdout)


def make_venv(path) -> str:
    """Create a virtual environment at ``path``; return its python.

    It has no pip and sees the site-packages of the running environment,
    after its own.
    """
    path = os.path.abspath(os.fspath(path))
    subprocess.run([
        sys.executable, '-m', 'venv', '--system-site-packages',
        '--without-pip', path
    ],
                   check=True)
    python = os.path.join(path, 'bin', 'python')
    purelib, seen = _ask(
        python, 'import json, site, sysconfig\n'
        'dirs = site.getsitepackages()\n'
        'if site.ENABLE_USER_SITE:\n'
        '    dirs.append(site.getusersitepackages())\n'
        "print(json.dumps([sysconfig.get_paths()['purelib'], dirs]))\n")
    seen = {_key(d) for d in seen}
    missing = []
    for d in outer_site_dirs():
        if _key(d) not in seen and d not in missing:
            missing.append(d)
    os.makedirs(purelib, exist_ok=True)
    with open(os.path.join(purelib, PTH), 'w') as f:
        # a .pth runs a line that starts with `import`, one line only
        code = _ADD.format(paths=missing)
        f.write(f'import sys; exec({code!r}, {{}})\n')
    return python


def main(argv=None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.exit(f'usage: {sys.executable} {__file__} TARGET')
    print(make_venv(args[0]))


if __name__ == '__main__':
    main()
