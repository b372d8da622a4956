#!/usr/bin/env bash
# Install mmcpd and its stack into the active Python environment.
#
#   bash tools/install.sh
#
# Safe to run twice: what is installed at the right version is kept, and the
# mmcv wheel (a 20-minute source build on 2 cores) is cached in a folder keyed
# by the torch version (and, with CUDA ops, torch's CUDA version and the GPU
# architectures), so a wheel built for another torch is never reused.
#
# Where torch sees a GPU, mmcv is built with its CUDA ops (FORCE_CUDA=1;
# needs nvcc) and onnxruntime-gpu replaces onnxruntime.
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
# mmcv has no binary wheel for this torch: build it once, with its CPU ops
# or, where torch sees a GPU, with its CUDA ops too (nvcc needed). The cache
# key names torch, Python and the machine; for a CUDA wheel, torch's CUDA
# version and the GPU architectures it was built for as well (a CPU wheel on
# a GPU machine lacks the CUDA ops; a CUDA wheel runs on its architectures
# only). The CPU key is what it always was, so cached CPU wheels stay valid.
CUDA=$("$PY" -c 'import torch; print(torch.cuda.is_available())' 2>/dev/null || echo False)
ORT=onnxruntime
if [ "$CUDA" = True ]; then
    CUDA_HOME=$("$PY" -c 'from torch.utils.cpp_extension import CUDA_HOME
print(CUDA_HOME or "")' 2>/dev/null || true)
    # what the build is for: TORCH_CUDA_ARCH_LIST, else the GPUs here
    TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$("$PY" -c 'import torch
n = torch.cuda.device_count()
caps = {"%d.%d" % torch.cuda.get_device_capability(i) for i in range(n)}
print(";".join(sorted(caps)))')}
    CUDA_TAG=$("$PY" -c 'import torch; print("cu" + torch.version.cuda.replace(".", ""))')-sm$(printf '%s' "$TORCH_CUDA_ARCH_LIST" | tr ' ;' '--' | tr -d '.+')
    TORCH_TAG=$("$PY" - "$CUDA_TAG" <<'PYEOF'
import platform, sys, torch
v = torch.__version__.split("+")[0]
print("torch%s-%s-py%d%d-%s" % (v, sys.argv[1], *sys.version_info[:2],
                                platform.machine()))
PYEOF
)
    FORCE_CUDA=1
    ORT=onnxruntime-gpu
    MMCV_CHECK='import mmcv.ops
assert mmcv.ops.get_compiling_cuda_version() != "not available"'
else
    TORCH_TAG=$("$PY" -c 'import platform, sys, torch
v = torch.__version__.split("+")[0]
print("torch%s-py%d%d-%s" % (v, *sys.version_info[:2], platform.machine()))')
    FORCE_CUDA=0
    MMCV_CHECK='import mmcv.ops'
fi
CACHE_DIR=${MMCPD_WHEEL_CACHE:-$HOME/.cache/mmcpd/wheels}/mmcv-${MMCV_VERSION}-${TORCH_TAG}
if have mmcv==$MMCV_VERSION && [ -f "$CACHE_DIR/.torch" ] &&
    [ "$(cat "$CACHE_DIR/.torch")" = "$TORCH_TAG" ] &&
    "$PY" -c "$MMCV_CHECK" 2>/dev/null; then
    echo "[mmcpd] mmcv ${MMCV_VERSION} (ops) already installed for ${TORCH_TAG}"
else
    WHEEL=$(ls "$CACHE_DIR"/mmcv-${MMCV_VERSION}-*.whl 2>/dev/null | head -n 1 || true)
    if [ -z "$WHEEL" ]; then
        if [ "$FORCE_CUDA" = 1 ] && [ ! -x "${CUDA_HOME:-/nonexistent}/bin/nvcc" ]; then
            echo "[mmcpd] error: torch sees a GPU, so mmcv ${MMCV_VERSION} is built with its CUDA ops, which needs the CUDA toolkit (nvcc) of torch's CUDA $("$PY" -c 'import torch; print(torch.version.cuda)'), but there is no nvcc (CUDA_HOME=${CUDA_HOME:-unset}, PATH=$PATH). Install the toolkit (e.g. the nvidia/cuda *-devel image) and set CUDA_HOME, or hide the GPU (CUDA_VISIBLE_DEVICES=) for a CPU-only install." >&2
            exit 1
        fi
        echo "[mmcpd] building mmcv ${MMCV_VERSION} from source for ${TORCH_TAG} (about 20 minutes on 2 cores)"
        BUILD_DIR=$(mktemp -d)
        "$PY" -m pip download --disable-pip-version-check -q --no-deps \
            --no-binary :all: -d "$BUILD_DIR" "mmcv==${MMCV_VERSION}" \
            2> >(grep -v 'is ignored: it is neither' >&2)
        tar xzf "$BUILD_DIR"/mmcv-${MMCV_VERSION}.tar.gz -C "$BUILD_DIR"
        # torch >= 2.10 headers need C++20; mmcv 2.1.0 asks for C++14/17.
        sed -i 's/c++14/c++20/g; s/c++17/c++20/g' \
            "$BUILD_DIR"/mmcv-${MMCV_VERSION}/setup.py
        if [ "$FORCE_CUDA" = 1 ]; then
            export CUDA_HOME TORCH_CUDA_ARCH_LIST
        fi
        MMCV_WITH_OPS=1 FORCE_CUDA=$FORCE_CUDA MAX_JOBS=${MAX_JOBS:-$(nproc)} \
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
STACK="mmengine==0.10.7 mmpretrain==1.2.0 mmsegmentation==1.2.2 mmdet==3.3.0"
TOOLS="onnx $ORT onnxslim scikit-learn matplotlib rich tqdm ftfy regex pytest pytest-random-order import-linter"
# onnxruntime and onnxruntime-gpu are one module in two packages: they cannot
# both be installed, and removing one removes files of the other.
dist() { "$PY" -c 'import sys
from importlib.metadata import version
version(sys.argv[1])' "$1" 2>/dev/null; }
ORT_OK=true ORT_REPAIR=false
if [ "$ORT" = onnxruntime-gpu ]; then
    dist onnxruntime-gpu || ORT_OK=false
    if dist onnxruntime; then
        echo "[mmcpd] replacing onnxruntime by onnxruntime-gpu"
        "$PY" -m pip uninstall --disable-pip-version-check -y -q onnxruntime
        $ORT_OK && ORT_REPAIR=true
        ORT_OK=false
    fi
fi
if $ORT_OK && have $STACK && (cd / && "$PY" -c 'import onnx, onnxruntime, onnxslim, sklearn, matplotlib, rich, tqdm, ftfy, regex, pytest, random_order, importlinter, mmdet.models') 2>/dev/null; then
    echo "[mmcpd] already installed"
else
    pip_install "mmcv==${MMCV_VERSION}" $STACK $TOOLS
    if $ORT_REPAIR; then  # installed, but onnxruntime's removal took files
        pip_install --force-reinstall --no-deps onnxruntime-gpu
    fi
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
(cd / && "$PY" -c 'import mmcpd, mmcv.ops, mmpretrain, mmseg, mmdet; print("[mmcpd] ready: mmcpd", mmcpd.__version__, "from", mmcpd.__file__)')
