"""Every available backend's GEMM vs ``torch.matmul`` on the same inputs, on the CPU.

Each backend's result is first checked against the float64 oracle; a wrong one fails
instead of being timed. GFLOP/s = 2*M*N*K / median time; ``vs_torch`` = torch time /
backend time (same process, same inputs). The full harness (``hetero bench``) comes
later; this keeps a CPU-only main job with no GPU.

    pytest bench/test_gemm_backends.py
"""

from __future__ import annotations

import pytest
import torch

import hetero
from hetero.testing import check_within, gemm_error_bound, randn

SHAPES = [(64, 64, 64), (128, 256, 64), (256, 256, 256)]  # (M, N, K)
DTYPES = [torch.float32, torch.bfloat16]


def _backends_serving(a, b):
    names = []
    for name, entry in sorted(hetero.registry.entries().items()):
        decision = hetero.explain("gemm", a, b, backend=name)
        if decision.chosen is not None and entry.backend.default:
            names.append(name)
    return names


CASES = [(backend, shape, dtype)
         for shape in SHAPES for dtype in DTYPES
         for backend in _backends_serving(randn(2, 2, dtype=dtype), randn(2, 2, dtype=dtype))
         + ["torch"]]


@pytest.mark.parametrize("backend, shape, dtype", CASES,
                         ids=[f"{b}-{m}x{n}x{k}-{str(d)[6:]}" for b, (m, n, k), d in CASES])
def test_gemm(benchmark, backend, shape, dtype):
    m, n, k = shape
    a, b = randn(m, k, dtype=dtype, seed=0), randn(k, n, dtype=dtype, seed=1)
    run = (lambda: torch.matmul(a, b)) if backend == "torch" else (
        lambda: hetero.gemm(a, b, backend=backend))
    check_within(run(), hetero.reference_gemm(a, b),
                 gemm_error_bound(a, b, out_dtype=dtype) if backend != "torch" else
                 gemm_error_bound(a, b, out_dtype=dtype) * 4, what=backend)
    benchmark.group = f"gemm {m}x{n}x{k} {str(dtype)[6:]}"
    benchmark.extra_info.update(backend=backend, threads=torch.get_num_threads(),
                                flops=2 * m * n * k)
    benchmark(run)
    seconds = benchmark.stats.stats.median
    benchmark.extra_info["gflops"] = round(2 * m * n * k / seconds / 1e9, 2)
