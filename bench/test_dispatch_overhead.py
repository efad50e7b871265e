"""hetero's own per-call cost, interleaved with PyTorch's call on the same tensors, one
thread:

- ``hetero.gemm`` on 8×8 fp32 against ``torch.mm``. Budget: 2 µs added. Also
  ``hetero.gemm`` with ``alpha=2.0``, a call that takes the Python path (the native
  entry serves only the common case: see ``hetero.native_entries.gemm_entry``), and the
  torch operator ``torch.ops.hetero.gemm`` (autograd's Python layer, then the entry).
- ``hetero.attention`` on a decode step (q (1, 4, 1, 32), k and v (1, 4, 16, 32)), fp32
  and bf16, against ``F.scaled_dot_product_attention``; the same call with
  ``backend="cpu"``, which takes the Python path, and the torch operator.

    pytest bench/test_dispatch_overhead.py -s                    # kernels as tuned
    HETERO_TUNED=off pytest bench/test_dispatch_overhead.py -s   # hetero's own kernels
"""

from __future__ import annotations

import statistics
import timeit

import pytest
import torch
import torch.nn.functional as F

import hetero
from hetero import tuned
from hetero.testing import randn

BUDGET_US = 2.0


def _per_call_us(fn, number=5000) -> float:
    return timeit.timeit(fn, number=number) / number * 1e6


def _interleaved(calls: dict) -> dict:
    """Each call's per-call µs over 25 interleaved rounds (so drift hits every call alike),
    on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        times = {name: [] for name in calls}
        for fn in calls.values():
            fn()  # warm the decision caches
        for _ in range(25):
            for name, fn in calls.items():
                times[name].append(_per_call_us(fn))
    finally:
        torch.set_num_threads(threads)
    return times


def _added(times: dict, ours: str, theirs: str) -> float:
    return statistics.median(h - m for h, m in zip(times[ours], times[theirs]))


def test_gemm_call_overhead(benchmark):
    a, b = randn(8, 8, seed=0), randn(8, 8, seed=1)
    kernel = hetero.explain("gemm", a, b).chosen
    calls = {"torch.mm": lambda: torch.mm(a, b), "hetero.gemm": lambda: hetero.gemm(a, b),
             "hetero.gemm alpha=2": lambda: hetero.gemm(a, b, alpha=2.0),
             "torch.ops.hetero.gemm": lambda: torch.ops.hetero.gemm(a, b)}
    times = _interleaved(calls)
    median = {name: statistics.median(t) for name, t in times.items()}
    added = _added(times, "hetero.gemm", "torch.mm")
    benchmark.extra_info.update(kernel=kernel.qualname, added_us=round(added, 3),
                                budget_us=BUDGET_US,
                                **{f"{name}_us": round(t, 3) for name, t in median.items()})
    print(f"\n{tuned.device_name(a.device)}, 1 thread, dispatch picks {kernel.qualname}: "
          + ", ".join(f"{name} {t:.2f} us" for name, t in median.items())
          + f"; hetero.gemm adds {added:.2f} us over torch.mm (budget {BUDGET_US} us)")
    benchmark(calls["hetero.gemm"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_attention_call_overhead(benchmark, dtype):
    q, k, v = (randn(*shape, seed=i).to(dtype) for i, shape in
               enumerate([(1, 4, 1, 32), (1, 4, 16, 32), (1, 4, 16, 32)]))
    kernel = hetero.explain("attention", q, k, v).chosen
    calls = {"SDPA": lambda: F.scaled_dot_product_attention(q, k, v),
             "hetero.attention": lambda: hetero.attention(q, k, v),
             "hetero.attention backend=cpu": lambda: hetero.attention(q, k, v, backend="cpu"),
             "torch.ops.hetero.attention": lambda: torch.ops.hetero.attention(q, k, v)}
    times = _interleaved(calls)
    median = {name: statistics.median(t) for name, t in times.items()}
    added = _added(times, "hetero.attention", "SDPA")
    benchmark.extra_info.update(kernel=kernel.qualname, added_us=round(added, 3),
                                **{f"{name}_us": round(t, 3) for name, t in median.items()})
    print(f"\n{tuned.device_name(q.device)}, 1 thread, {dtype}, dispatch picks "
          f"{kernel.qualname}: " + ", ".join(f"{name} {t:.2f} us" for name, t in median.items())
          + f"; hetero.attention adds {added:.2f} us over SDPA")
    benchmark(calls["hetero.attention"])
