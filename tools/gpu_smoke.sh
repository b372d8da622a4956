#!/usr/bin/env bash
# GPU smoke suite: what the CPU tests cannot check, in under 10 minutes on
# one GPU. Run from anywhere, after `bash tools/install.sh` on the GPU
# machine (mmcv with its CUDA ops, onnxruntime-gpu):
#
#   bash tools/gpu_smoke.sh            # WORK=<dir> keeps the outputs there
#
# Steps (each prints PASS, FAIL or SKIP; the exit status is 1 if any failed):
#   env      torch / CUDA / onnxruntime versions and providers, an mmcv CUDA
#            op (nms, RoIAlign) on CUDA tensors
#   pytest   the CUDA-marked tests (`pytest -m cuda`)
#   demo     SKIP: tools/demo.py has no --amp flag
#   ddp      one-GPU NCCL DDP CPD run with fp16 AMP (tools/dist_train.sh)
#   latency  a latency table on the CUDA provider; times grow with width
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
WORK=${WORK:-$(mktemp -d /tmp/mmcpd_gpu_smoke.XXXXXX)}
mkdir -p "$WORK"
export MMCPD_CACHE="$WORK/cache"  # measure, do not read old tables
FAILED=0
RESULTS=()

# run_step NAME FUNCTION: the function runs with `set -e` in a subshell;
# its status decides PASS / FAIL, and the suite goes on either way.
run_step() {
    local name=$1 fn=$2 start rc
    start=$(date +%s)
    echo "=== [$name] ==="
    set +e
    ( set -euo pipefail; "$fn" )
    rc=$?
    set -e
    local took=$(($(date +%s) - start))
    if [ "$rc" -eq 0 ]; then
        RESULTS+=("PASS  $name (${took} s)")
        echo "[$name] PASS (${took} s)"
    else
        RESULTS+=("FAIL  $name (exit $rc, ${took} s)")
        echo "[$name] FAIL (exit $rc, ${took} s)"
        FAILED=1
    fi
}

skip_step() {
    RESULTS+=("SKIP  $1: $2")
    echo "=== [$1] === SKIP: $2"
}

env_check() {
    timeout 120 python - <<'PYEOF'
import onnxruntime as ort
import torch

print('torch', torch.__version__, '| CUDA', torch.version.cuda, '| cuDNN',
      torch.backends.cudnn.version())
assert torch.cuda.is_available(), 'torch sees no GPU'
for i in range(torch.cuda.device_count()):
    print(f'cuda:{i}', torch.cuda.get_device_name(i),
          torch.cuda.get_device_capability(i))
print('onnxruntime', ort.__version__, '| device', ort.get_device(),
      '| providers', ort.get_available_providers())
assert 'CUDAExecutionProvider' in ort.get_available_providers(), \
    'no CUDA provider: pip install onnxruntime-gpu (bash tools/install.sh)'

import mmcv
import mmcv.ops
from mmcv.ops import RoIAlign, nms

cuda_ops = mmcv.ops.get_compiling_cuda_version()
print('mmcv', mmcv.__version__, '| ops built with CUDA', cuda_ops)
assert cuda_ops != 'not available', 'mmcv was built without CUDA ops'
boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]],
                     dtype=torch.float32, device='cuda')
scores = torch.tensor([0.9, 0.8, 0.7], device='cuda')
dets, keep = nms(boxes, scores, 0.5)
assert keep.is_cuda and keep.tolist() == [0, 2], keep
feats = torch.arange(16, dtype=torch.float32, device='cuda').view(1, 1, 4, 4)
rois = torch.tensor([[0, 0, 0, 3, 3]], dtype=torch.float32, device='cuda')
out = RoIAlign((2, 2), 1.0, sampling_ratio=2, aligned=False)(feats, rois)
assert out.is_cuda and out.shape == (1, 1, 2, 2), out.shape
ref = RoIAlign((2, 2), 1.0, sampling_ratio=2, aligned=False)(feats.cpu(),
                                                              rois.cpu())
torch.testing.assert_close(out.cpu(), ref)
print('mmcv CUDA ops: nms and RoIAlign OK')
PYEOF
}

cuda_tests() {
    # without a GPU every test here is skipped: that is no pass
    python -c 'import torch; assert torch.cuda.is_available(), "no GPU"'
    timeout 300 python -m pytest tests -q -m cuda -p no:cacheprovider -rs
}

ddp_train() {
    local out="$WORK/ddp"
    # a few iterations of the CPD demo from scratch (no baseline
    # checkpoint): two prune steps, validation and the deployed model
    timeout 300 bash tools/dist_train.sh \
        configs/demo/cpd_resnet18-w16_digits.py 1 --amp --work-dir "$out" \
        --cfg-options load_from=None train_cfg.max_iters=8 \
        train_cfg.val_interval=8 cpd.interval=2 cpd.num_steps=2 \
        default_hooks.checkpoint.interval=8 default_hooks.logger.interval=2 \
        train_dataloader.batch_size=32
    test -f "$out/pruned_deploy.pth"
    grep -rq "AmpOptimWrapper" "$out" || {
        echo 'the run did not use AmpOptimWrapper' >&2
        return 1
    }
    grep -rq "Distributed training: True" "$out" || {
        echo 'the run was not distributed' >&2
        return 1
    }
    grep -rq "nccl" "$out" || {
        echo 'no NCCL backend in the run config' >&2
        return 1
    }
}

latency_table() {
    local table="$WORK/latency_cuda.json"
    timeout 300 python tools/analysis/latency_table.py \
        configs/demo/resnet18-w16_1xb64_digits.py --input-shape 1 3 64 64 \
        --provider cuda --points 3 --budget 0.2 --refresh --out "$table"
    python - "$table" <<'PYEOF'
import json
import sys

import torch

with open(sys.argv[1]) as f:
    table = json.load(f)
machine = table['machine']
assert machine['provider'] == 'cuda', machine
assert machine['gpu'] == torch.cuda.get_device_name(0), machine
narrow = wide = 0.0
for layer in table['layers']:
    ms = layer['ms']
    narrow += ms[0][0] * layer['calls']
    wide += ms[-1][-1] * layer['calls']
    print(f"  {layer['param']}: {ms[0][0]:.4f} ms at "
          f"({layer['grid_in'][0]}, {layer['grid_out'][0]}), "
          f"{ms[-1][-1]:.4f} ms at ({layer['in']}, {layer['out']})")
print(f'layers at their narrowest: {narrow:.3f} ms, at full width: '
      f'{wide:.3f} ms; model {table["model_ms"]:.3f} ms')
assert wide > narrow, 'full-width layers are not slower than narrow ones'
assert table['model_ms'] > 0
PYEOF
}

run_step env env_check
run_step pytest cuda_tests
skip_step demo 'tools/demo.py has no --amp flag (tools/train.py has)'
run_step ddp ddp_train
run_step latency latency_table

echo "=== summary (outputs in $WORK) ==="
printf '%s\n' "${RESULTS[@]}"
exit "$FAILED"
