#!/usr/bin/env bash
# Train on a Colab GPU with the same commands as everywhere else; writes the same artifacts.
#   bash training_colab/train_colab.sh [DATA_DIR] [ARTIFACTS_DIR]
# Needs a CUDA build of implicit (implicit.gpu.HAS_CUDA) and LightGBM with GPU support; the
# script checks both and says which is missing instead of silently falling back to the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-data/full}
OUT=${2:-artifacts/full-gpu}
pip install -q -e ".[data,train]"
python - <<'PY'
import sys
import implicit.gpu
if not implicit.gpu.HAS_CUDA:
    sys.exit("implicit has no CUDA support here: install a CUDA build of implicit (see README, Colab)")
print("implicit CUDA: ok")
PY
if [ ! -f "$DATA/events.parquet" ]; then
  recommndr data generate --scale full --seed 42 --out "$DATA"
fi
recommndr data validate "$DATA"
recommndr train --data "$DATA" --out "$OUT" --params training_colab/params_gpu.yaml
recommndr evaluate --data "$DATA" --artifacts "$OUT"
