#!/usr/bin/env bash
# Install mmcpd and its stack into the active Python environment.
#
#   bash tools/install.sh
#
# Safe to run twice: what is installed at the right version is kept, and the
# mmcv wheel (a 20-minute source build on 2 cores) is cached in a folder keyed
# by the torch version, so a wheel built for another torch is never reused.
set -euo pipefail

PY=${PYTHON:-python}
TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
MMCV_VERSION=2.1.0
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

pip_install() {
    "$PY" -m pip install --disable-pip-version-check -q "$@" \
        2> >(grep -v 'is ignored: it is neither\|as the .root. user' >&2)
}
have() { "$PY" - "$@" <<'PYEOF' 2>/dev/null
import sys
from importlib.metadata import version
for spec in sys.argv[1:]:
    name, want = spec.split('==')
    if version(name) != want:
        sys.exit(1)
PYEOF
}

echo "[mmcpd] torch ${TORCH_VERSION}, torchvision ${TORCHVISION_VERSION}"
have torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION ||
    pip_install "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"
"$PY" -c 'import setuptools, wheel, ninja
assert int(setuptools.__version__.split(".")[0]) < 80' 2>/dev/null ||
    pip_install "setuptools<80" wheel ninja

# setuptools < 80: mmcv's setup imports pkg_resources (< 81), and the legacy
# editable install of mmcpd below needs `setup.py develop` (< 80).
# mmcv has no binary wheel for this torch: build it once with its CPU ops.
TORCH_TAG=$("$PY" -c 'import platform, sys, torch
v = torch.__version__.split("+")[0]
print("torch%s-py%d%d-%s" % (v, *sys.version_info[:2], platform.machine()))')
CACHE_DIR=${MMCPD_WHEEL_CACHE:-$HOME/.cache/mmcpd/wheels}/mmcv-${MMCV_VERSION}-${TORCH_TAG}
if have mmcv==$MMCV_VERSION && [ -f "$CACHE_DIR/.torch" ] &&
    [ "$(cat "$CACHE_DIR/.torch")" = "$TORCH_TAG" ] &&
    "$PY" -c 'import mmcv.ops' 2>/dev/null; then
    echo "[mmcpd] mmcv ${MMCV_VERSION} (ops) already installed for ${TORCH_TAG}"
else
    WHEEL=$(ls "$CACHE_DIR"/mmcv-${MMCV_VERSION}-*.whl 2>/dev/null | head -n 1 || true)
    if [ -z "$WHEEL" ]; then
        echo "[mmcpd] building mmcv ${MMCV_VERSION} from source for ${TORCH_TAG} (about 20 minutes on 2 cores)"
        BUILD_DIR=$(mktemp -d)
        "$PY" -m pip download --disable-pip-version-check -q --no-deps \
            --no-binary :all: -d "$BUILD_DIR" "mmcv==${MMCV_VERSION}" \
            2> >(grep -v 'is ignored: it is neither' >&2)
        tar xzf "$BUILD_DIR"/mmcv-${MMCV_VERSION}.tar.gz -C "$BUILD_DIR"
        # torch >= 2.10 headers need C++20; mmcv 2.1.0 asks for C++14/17.
        sed -i 's/c++14/c++20/g; s/c++17/c++20/g' \
            "$BUILD_DIR"/mmcv-${MMCV_VERSION}/setup.py
        MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
            "$PY" -m pip wheel --disable-pip-version-check --no-deps \
            --no-build-isolation -w "$BUILD_DIR" \
            "$BUILD_DIR"/mmcv-${MMCV_VERSION}
        mkdir -p "$CACHE_DIR"
        mv "$BUILD_DIR"/mmcv-*.whl "$CACHE_DIR"/
        rm -rf "$BUILD_DIR"
        WHEEL=$(ls "$CACHE_DIR"/mmcv-${MMCV_VERSION}-*.whl | head -n 1)
    fi
    echo "$TORCH_TAG" > "$CACHE_DIR/.torch"
    pip_install --force-reinstall --no-deps "$WHEEL"
fi

echo "[mmcpd] OpenMMLab stack, ONNX and tools"
STACK="mmengine==0.10.7 mmpretrain==1.2.0 mmsegmentation==1.2.2"
TOOLS="onnx onnxruntime onnxslim scikit-learn matplotlib rich tqdm ftfy regex pytest pytest-random-order"
if have $STACK && (cd / && "$PY" -c 'import onnx, onnxruntime, onnxslim, sklearn, matplotlib, rich, tqdm, ftfy, regex, pytest, random_order') 2>/dev/null; then
    echo "[mmcpd] already installed"
else
    pip_install "mmcv==${MMCV_VERSION}" $STACK $TOOLS
fi

echo "[mmcpd] mmcpd (editable)"
# Installed from this checkout, with the configs where mmengine looks for
# `mmcpd::` (mmcpd/.mim) and the start-up hook (mmcpd-scope.pth) that lets
# any tool, MMPretrain's and MMSeg's included, read `mmcpd::` paths?
INSTALLED=$(cd / && "$PY" -W ignore -c 'import os, mmcpd
from mmengine.utils import get_installed_path
here = os.path.realpath(os.path.dirname(mmcpd.__file__))
if os.path.realpath(get_installed_path("mmcpd")) == here:
    print(os.path.dirname(here))' 2>/dev/null || true)
if [ "$INSTALLED" != "$(realpath "$ROOT")" ] ||
    [ ! -e "$ROOT/mmcpd/.mim/configs/_base_" ] ||
    ! (cd / && "$PY" -c 'from mmengine.config.utils import MODULE2PACKAGE
assert "mmcpd" in MODULE2PACKAGE' 2>/dev/null); then
    # A legacy (egg-link) editable install: mmengine finds `mmcpd::` configs
    # under the package's location, which PEP 660 installs hide.
    pip_install --no-deps --no-build-isolation --no-use-pep517 -e "$ROOT"
fi
(cd / && "$PY" -c 'import mmcpd, mmcv.ops, mmpretrain, mmseg; print("[mmcpd] ready: mmcpd", mmcpd.__version__, "from", mmcpd.__file__)')
