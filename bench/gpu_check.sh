#!/usr/bin/env bash
# The GPU checks of issue 14, as one script for the day a GPU is lent (CI never needs one):
#   1. stage-1 training images/s of the supernet against torchvision's MobileNetV2 on this card
#      (imagenet preset at 224 px, batch 128; goal: at least 0.8x);
#   2. one real-resolution stage-2 layer: all 12 candidates of layer 0 (the widest
#      activations) at 224 px and batch 256 on a synthetic JPEG ImageFolder, with the peak host
#      RSS (main process and loader workers) and the peak device memory.
# Usage: bench/gpu_check.sh [OUT_DIR]   (run from anywhere; writes OUT_DIR/*.txt, default var/)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${1:-var}
DATA=${SCALE_DATA:-var/scale-data-224}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"

echo "== stage 1 throughput (bench/stage1_throughput.py)"
timeout 240 "$PY" bench/stage1_throughput.py 2>&1 | tee "$OUT/stage1_throughput.txt"

echo "== one stage-2 layer at 224 px"
"$PY" bench/scale.py --write-only --data "$DATA" --classes 20 --per-class 40 --size 224
timeout 240 "$PY" bench/scale.py --child --device cuda --data "$DATA" --size 224 --batch 256 \
  --val 200 --eval-batches 1 --steps "${STAGE2_STEPS:-20}" --candidates 12 --layer 0 \
  --workers "${WORKERS:-8}" --cache-mb 2048 2>&1 | tee "$OUT/stage2_layer.txt"
"$PY" - "$OUT/stage2_layer.txt" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
print(f"stage-2 layer 0, {r['candidates']} candidates x {r['steps']} steps at 224 px, batch 256: "
      f"{r['s']:.1f} s, peak host RSS {r['peak_rss'] / 2**30:.2f} GiB (workers "
      f"{r['workers_peak_rss'] / 2**30:.2f} GiB each at most), peak device "
      f"{r.get('peak_device', 0) / 2**30:.2f} GiB")
PY
