#!/usr/bin/env bash
# Train on a Colab GPU with the same commands as everywhere else; writes the same artifacts.
#   bash training_colab/train_colab.sh [DATA_DIR] [ARTIFACTS_DIR]     (data/full, artifacts/full-gpu)
#
# 1. a Python 3.12 virtual environment ($VENV, made with uv, which downloads a CPython 3.12 when the
#    runtime has none: the package allows 3.11 and 3.12) with the locked packages and the package;
# 2. on a machine with an NVIDIA GPU, what implicit's CUDA build needs: the PyPI wheel of implicit
#    0.7.3 carries CUDA 13 kernels (compute capability 8.0 and newer) that need RMM and the CUDA 13
#    runtime, cuBLAS and cuRAND, installed here from PyPI and put on LD_LIBRARY_PATH;
# 3. training_colab/colab_gpu.py tries each GPU part on a few rows (implicit.gpu.HAS_CUDA, then an
#    ALS fit on the GPU; LightGBM's OpenCL "gpu" device, after registering NVIDIA's OpenCL driver)
#    and writes the parameters that work here: a part that does not work falls back to the CPU with
#    the reason printed, and the run goes on;
# 4. the shop (generated at $SCALE when DATA_DIR has none), validated; train and evaluate with those
#    parameters; then, when a part ran on the GPU, the same training on the CPU (CPU_BASELINE=1)
#    and the two runs' stage times side by side ($REPORT/timings_gpu_vs_cpu.json).
#
# Settings: SCALE (tiny|small|full, default full), CPU_BASELINE (1, or 0 to skip the CPU run),
# CPU_ARTIFACTS (default ARTIFACTS_DIR without "-gpu", plus "-cpu"), REPORT (reports/colab),
# VENV (.venv), UV (a uv command; default: the Makefile's UV_VERSION, installed with pip),
# IMPLICIT_FROM_SOURCE=1 (build implicit's CUDA code with this machine's nvcc, for a GPU the wheel
# has no kernels for, such as a T4 (7.5); CUDACXX and IMPLICIT_CUDA_ARCH override what it finds;
# not yet run anywhere).
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${1:-data/full}
OUT=${2:-artifacts/full-gpu}
SCALE=${SCALE:-full}
CPU_BASELINE=${CPU_BASELINE:-1}
CPU_OUT=${CPU_ARTIFACTS:-${OUT%-gpu}-cpu}
REPORT=${REPORT:-reports/colab}
VENV=${VENV:-.venv}
PY=$VENV/bin/python
RECOMMNDR=$VENV/bin/recommndr
export OPENBLAS_NUM_THREADS=1 MLFLOW_DISABLE_TELEMETRY=true DVC_NO_ANALYTICS=1 GX_ANALYTICS_ENABLED=false

say() { printf '\n== %s\n' "$*"; }

if [ -n "${UV:-}" ]; then
  read -r -a UVC <<<"$UV"
else
  UV_VERSION=$(sed -n 's/^UV_VERSION := *//p' Makefile)
  python3 -m pip install -q "uv==$UV_VERSION"
  UVC=(python3 -m uv)
fi

say "Python 3.12 virtual environment in $VENV"
[ -x "$PY" ] || "${UVC[@]}" venv --python 3.12 "$VENV"
"$PY" -c 'import sys; v = sys.version_info[:2]; sys.exit(None if (3, 11) <= v <= (3, 12) else
    f"{sys.prefix} has Python {v[0]}.{v[1]}: the package needs 3.11 or 3.12 (remove it, or set VENV)")'

say "Installing the locked packages (requirements/lock.txt) and the package"
"${UVC[@]}" pip install -q --python "$PY" -r requirements/lock.txt
"${UVC[@]}" pip install -q --python "$PY" --no-deps -e .

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L; then
  if [ "${IMPLICIT_FROM_SOURCE:-0}" = 1 ]; then
    CUDACXX=${CUDACXX:-/usr/local/cuda/bin/nvcc}
    [ -x "$CUDACXX" ] || { echo "IMPLICIT_FROM_SOURCE=1 needs nvcc: no $CUDACXX (set CUDACXX)"; exit 1; }
    ARCH=${IMPLICIT_CUDA_ARCH:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d '.')}
    CUDA_MAJOR=$("$CUDACXX" --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')
    say "Building implicit's CUDA code with $CUDACXX (CUDA $CUDA_MAJOR) for compute capability $ARCH (minutes)"
    CUDACXX=$CUDACXX IMPLICIT_CUDA_ARCH=$ARCH "${UVC[@]}" pip install --python "$PY" \
      -c requirements/lock.txt --no-binary implicit --reinstall-package implicit \
      implicit "rmm-cu$CUDA_MAJOR==26.2.*"
    CUDA_LIB=$(dirname "$(dirname "$CUDACXX")")/lib64
    export LD_LIBRARY_PATH="$CUDA_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  else
    say "What implicit's CUDA 13 wheel needs: RMM 26.02 (its build's), the CUDA 13.0 runtime, cuBLAS, cuRAND"
    "${UVC[@]}" pip install -q --python "$PY" -c requirements/lock.txt \
      "rmm-cu13==26.2.*" "nvidia-cuda-runtime==13.0.*" "nvidia-cublas==13.0.*" "nvidia-curand==10.4.0.*"
    CU13=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')/nvidia/cu13/lib
    export LD_LIBRARY_PATH="$CU13${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
else
  echo "No NVIDIA GPU visible (nvidia-smi): everything trains on the CPU (Runtime > Change runtime type for a GPU)."
fi

say "Which parts train on the GPU here"
mkdir -p "$REPORT"
"$PY" training_colab/colab_gpu.py devices --params training_colab/params_gpu.yaml \
  --out-params "$REPORT/params_gpu_effective.yaml" --cpu-params "$REPORT/params_cpu.yaml" \
  --record "$REPORT/devices.json"
if ! "$PY" -c 'import implicit.als' >/dev/null 2>&1; then
  echo "implicit does not import with RMM installed: removing rmm-cu13 (ALS on the CPU)."
  "${UVC[@]}" pip uninstall --python "$PY" rmm-cu13 librmm-cu13
fi

if [ ! -f "$DATA/events.parquet" ]; then
  say "Generating the $SCALE synthetic shop into $DATA"
  "$RECOMMNDR" data generate --scale "$SCALE" --seed 42 --out "$DATA"
fi
say "Validating $DATA"
"$RECOMMNDR" data validate "$DATA"
say "Training with $REPORT/params_gpu_effective.yaml into $OUT"
"$RECOMMNDR" train --data "$DATA" --out "$OUT" --params "$REPORT/params_gpu_effective.yaml"
"$RECOMMNDR" evaluate --data "$DATA" --artifacts "$OUT"

CPU_ARGS=()
if [ "$CPU_BASELINE" != 1 ]; then
  echo "CPU baseline skipped (CPU_BASELINE=$CPU_BASELINE)."
elif grep -Eq '^ *(use_gpu: true|device: gpu)' "$REPORT/params_gpu_effective.yaml"; then
  say "CPU baseline: the same parameters on the CPU into $CPU_OUT (not tracked)"
  "$RECOMMNDR" train --data "$DATA" --out "$CPU_OUT" --params "$REPORT/params_cpu.yaml" --no-track
  CPU_ARGS=(--cpu "$CPU_OUT")
else
  echo "CPU baseline skipped: no part ran on the GPU, so $OUT is itself a CPU run."
fi
say "Stage times ($OUT/timings.json)"
"$PY" training_colab/colab_gpu.py timings --gpu "$OUT" "${CPU_ARGS[@]}" \
  --devices "$REPORT/devices.json" --out "$REPORT/timings_gpu_vs_cpu.json"
