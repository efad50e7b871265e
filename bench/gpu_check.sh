#!/usr/bin/env bash
# Everything GPU-side in one run: build hetero, run the full test suite on the GPU,
# benchmark the GPU backends against PyTorch, time dispatch overhead, print a table last.
#   OUT=results/gpu bash bench/gpu_check.sh [--quick]
# `harness` instead builds and runs `hetero bench --device cuda` (JSON + PNG under $OUT):
#   OUT=results/gpu bash bench/gpu_check.sh harness [--quick]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

echo "== $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
$PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"

echo "== build"
$PY -m pip install -q --no-build-isolation --no-deps . >"$OUT/build.log" 2>&1 \
  || { tail -30 "$OUT/build.log"; exit 1; }

if [ "${1:-}" = harness ]; then
  shift
  echo "== hetero bench on the GPU"
  timeout 540 $PY -m hetero bench --device cuda --json "$OUT/hetero-bench.json" \
    --plot "$OUT/hetero-bench.png" "$@" 2>&1 | tee "$OUT/hetero-bench.log" | grep -v "^\["
  exit "${PIPESTATUS[0]}"
fi

echo "== tests on the GPU"
XDIST=$($PY -c "import xdist" 2>/dev/null && echo "-n 8")  # compiles are CPU-bound
timeout 240 $PY -m pytest tests -q -p no:cacheprovider $XDIST --durations=8 2>&1 \
  | tee "$OUT/tests.log" | tail -25
tests_rc=${PIPESTATUS[0]}

echo "== dispatch overhead (this host's CPU)"
$PY -m pytest bench/test_dispatch_overhead.py -q -s -p no:cacheprovider \
  --benchmark-disable-gc 2>&1 | grep -E "added|passed|failed"

echo "== benchmark"
timeout 330 $PY bench/gpu_bench.py --out "$OUT/gpu_bench.json" "$@" 2>&1 | tee "$OUT/bench.log"
bench_rc=${PIPESTATUS[0]}
echo "tests rc=$tests_rc bench rc=$bench_rc"
exit $(( tests_rc || bench_rc ))
