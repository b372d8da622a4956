#!/usr/bin/env bash
# A benchmark-only virtualenv with the anchors (Torch-Pruning 1.6.1, ModelOpt
# 0.47 FastNAS) over the system's mmcpd stack; not runtime deps of mmcpd.
# Usage: bash benchmarks/quality/install_anchors.sh [VENV] (default
# /work/benchenv); then run transfer.py with VENV/bin/python.
set -euo pipefail
VENV=${1:-/work/benchenv}
HERE=$(cd "$(dirname "$0")" && pwd)
python -m venv --system-site-packages "$VENV"
"$VENV/bin/pip" install -r "$HERE/requirements-anchors.txt"
"$VENV/bin/pip" install --no-deps nvidia-modelopt==0.47.0
"$VENV/bin/python" -c "import torch_pruning, modelopt.torch.prune as mtp; print('anchors ok', torch_pruning.__version__)"
