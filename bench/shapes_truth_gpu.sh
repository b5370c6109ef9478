#!/usr/bin/env bash
# The shapes ground truth on a GPU, for the day one is lent (nothing needs one): the same
# script, the same recipe and pool, --device cuda; resumable, so each call continues the
# committed file where the last one stopped. Bring the file back and commit it.
# Usage: bench/shapes_truth_gpu.sh [LIMIT_S]   (stops starting trainings after LIMIT_S, default 480)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total --format=csv
"$PY" bench/shapes_truth.py --device cuda --limit "${1:-480}" --networks "${NETWORKS:-10}" \
  --seeds "${SEEDS:-3}" --epochs "${EPOCHS:-10}"
