"""hetero's own per-call cost: ``hetero.gemm`` on 8×8 fp32 against ``torch.mm`` on the
same tensors, interleaved, one thread. Budget: 2 µs added.

    pytest bench/test_dispatch_overhead.py -s                    # kernels as tuned
    HETERO_TUNED=off pytest bench/test_dispatch_overhead.py -s   # hetero's cpu.gemm

Also prints ``hetero.gemm`` with ``alpha=2.0``, a call that takes the Python path (the
native entry serves only the common case: see ``hetero.native_entries.gemm_entry``).
"""

from __future__ import annotations

import statistics
import timeit

import torch

import hetero
from hetero import tuned
from hetero.testing import randn

BUDGET_US = 2.0


def _per_call_us(fn, number=5000) -> float:
    return timeit.timeit(fn, number=number) / number * 1e6


def test_gemm_call_overhead(benchmark):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, b = randn(8, 8, seed=0), randn(8, 8, seed=1)
        kernel = hetero.explain("gemm", a, b).chosen
        calls = {"torch.mm": lambda: torch.mm(a, b), "hetero.gemm": lambda: hetero.gemm(a, b),
                 "hetero.gemm alpha=2": lambda: hetero.gemm(a, b, alpha=2.0)}
        times = {name: [] for name in calls}
        for fn in calls.values():
            fn()  # warm the decision caches
        for _ in range(25):  # interleaved, so drift hits every call alike
            for name, fn in calls.items():
                times[name].append(_per_call_us(fn))
    finally:
        torch.set_num_threads(threads)
    median = {name: statistics.median(t) for name, t in times.items()}
    added = statistics.median(h - m for h, m in zip(times["hetero.gemm"], times["torch.mm"]))
    benchmark.extra_info.update(kernel=kernel.qualname, added_us=round(added, 3),
                                budget_us=BUDGET_US,
                                **{f"{name}_us": round(t, 3) for name, t in median.items()})
    print(f"\n{tuned.device_name(a.device)}, 1 thread, dispatch picks {kernel.qualname}: "
          + ", ".join(f"{name} {t:.2f} us" for name, t in median.items())
          + f"; hetero.gemm adds {added:.2f} us over torch.mm (budget {BUDGET_US} us)")
    benchmark(calls["hetero.gemm"])
