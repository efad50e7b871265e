"""hetero's own per-call cost: ``hetero.gemm`` on tiny tensors vs calling the kernel
that dispatch selected directly with its argument record (both allocate their output).
Budget: 2 us.

    pytest bench/test_dispatch_overhead.py
"""

from __future__ import annotations

import statistics
import timeit

import torch

import hetero
from hetero.ops.gemm import GemmArgs
from hetero.testing import randn

BUDGET_US = 2.0


def _per_call_us(fn, number=2000) -> float:
    return timeit.timeit(fn, number=number) / number * 1e6


def test_gemm_dispatch_overhead(benchmark):
    a, b = randn(2, 2, seed=0), randn(2, 2, seed=1)
    kernel = hetero.explain("gemm", a, b).chosen
    hetero.gemm(a, b)  # warm the decision cache

    def direct():
        kernel.fn(GemmArgs(a, b, torch.empty((2, 2), dtype=a.dtype, device=a.device)))

    def dispatched():
        hetero.gemm(a, b)

    direct_us, hetero_us = [], []
    for _ in range(25):  # interleaved, so drift hits both alike
        direct_us.append(_per_call_us(direct))
        hetero_us.append(_per_call_us(dispatched))
    added = statistics.median(h - d for h, d in zip(hetero_us, direct_us))
    benchmark.extra_info.update(
        kernel=kernel.qualname, direct_us=round(statistics.median(direct_us), 3),
        hetero_us=round(statistics.median(hetero_us), 3), added_us=round(added, 3),
        added_us_best=round(min(hetero_us) - min(direct_us), 3), budget_us=BUDGET_US)
    print(f"\n{kernel.qualname}: direct {statistics.median(direct_us):.2f} us, "
          f"hetero.gemm {statistics.median(hetero_us):.2f} us, added {added:.2f} us "
          f"(best-of {min(hetero_us) - min(direct_us):.2f} us; budget {BUDGET_US} us)")
    benchmark(dispatched)
