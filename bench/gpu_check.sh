#!/usr/bin/env bash
# Everything GPU-side in one run: build hetero, run the full test suite on the GPU,
# benchmark the GPU backends against PyTorch (and the Triton fp8 scaled GEMM against
# torch._scaled_mm: bench/gpu_scaled_gemm.py; the Triton serving attention against SDPA,
# FlexAttention and varlen_attn: bench/gpu_serving_attention.py), time dispatch overhead.
#   OUT=results/gpu bash bench/gpu_check.sh [--quick]
# `harness` instead builds and runs `hetero bench --device cuda` (JSON + PNG under $OUT):
#   OUT=results/gpu bash bench/gpu_check.sh harness [--quick]
# `cuda` builds hetero._C_cuda (nvcc, sm_80 + sm_90a; a missing nvcc fails the build),
# runs its tests and the conformance suite on the GPU, then benchmarks it against cuBLAS
# and SDPA (targets: bf16 GEMM 4096^3 >= 0.7x cuBLAS, attention forward >= 0.6x SDPA):
#   OUT=results/gpu bash bench/gpu_check.sh cuda [--quick]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

echo "== $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
$PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"

echo "== build"
SKBUILD_CMAKE_DEFINE="HETERO_CUDA=ON" \
  $PY -m pip install -q --no-build-isolation --no-deps . >"$OUT/build.log" 2>&1 \
  || { tail -30 "$OUT/build.log"; exit 1; }
$PY -c "from hetero.backends import native_gpu as g; print('hetero._C_cuda:', g.build_status('_C_cuda'))"

if [ "${1:-}" = cuda ]; then
  shift
  echo "== native CUDA backend: tests, conformance, benchmark"
  $PY -m hetero info | sed -n '/^cuda /,/^[a-z]/p' | head -8
  timeout 120 $PY -m pytest tests/backends/test_native_gpu.py -q -p no:cacheprovider 2>&1 \
    | tee "$OUT/tests-cuda.log" | tail -5
  tests_rc=${PIPESTATUS[0]}
  timeout 180 $PY -m hetero conformance --backend cuda --json "$OUT/conformance-cuda.json" \
    2>/dev/null | sed -n '1,14p'
  conformance_rc=${PIPESTATUS[0]}
  timeout 240 $PY bench/gpu_bench.py --backends cuda --out "$OUT/gpu_bench_cuda.json" "$@" 2>&1 \
    | tee "$OUT/bench-cuda.log"
  bench_rc=${PIPESTATUS[0]}
  echo "tests rc=$tests_rc conformance rc=$conformance_rc bench rc=$bench_rc"
  exit $(( tests_rc || conformance_rc || bench_rc ))
fi

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

echo "== fp8 scaled GEMM (triton) vs torch._scaled_mm"
timeout 300 $PY bench/gpu_scaled_gemm.py --out "$OUT/gpu_scaled_gemm.json" "$@" 2>&1 \
  | tee "$OUT/scaled-gemm.log"
scaled_rc=${PIPESTATUS[0]}

echo "== serving attention (triton) vs gather+SDPA, FlexAttention, varlen_attn"
timeout 300 $PY bench/gpu_serving_attention.py --out "$OUT/gpu_serving.json" "$@" 2>&1 \
  | tee "$OUT/serving.log"
serving_rc=${PIPESTATUS[0]}
echo "tests rc=$tests_rc bench rc=$bench_rc scaled_gemm rc=$scaled_rc serving rc=$serving_rc"
exit $(( tests_rc || bench_rc || scaled_rc || serving_rc ))
