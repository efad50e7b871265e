"""What a routed call costs under ``hetero.enabled()`` over the same call in plain PyTorch.

    python bench/routed_call_cost.py              # kernels as the tuned table chooses
    HETERO_TUNED=off python bench/routed_call_cost.py   # hetero's own kernels

Tiny tensors, so the time is the call's overhead: ``F.linear`` 1×64×64 and a decode-sized
``scaled_dot_product_attention`` (q (1, 4, 1, 32) against k, v (1, 4, 16, 32)), one
thread, best of 5 × 20000 calls each, plain then enabled. Prints what served the calls.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

import hetero
from hetero import tuned

CALLS = 20000


def best_us(fn, rounds: int = 5) -> float:
    for _ in range(1000):
        fn()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(CALLS):
            fn()
        best = min(best, (time.perf_counter() - start) / CALLS)
    return best * 1e6


def main() -> None:
    torch.set_num_threads(1)
    x, w = torch.randn(1, 64), torch.randn(64, 64)
    q, k, v = torch.randn(1, 4, 1, 32), torch.randn(1, 4, 16, 32), torch.randn(1, 4, 16, 32)
    calls = {"F.linear 1x64x64": lambda: F.linear(x, w),
             "SDPA decode (1,4,1,32) x 16 keys": lambda: F.scaled_dot_product_attention(q, k, v)}
    plain = {name: best_us(fn) for name, fn in calls.items()}
    hetero.reset_stats()
    with hetero.enabled():
        routed = {name: best_us(fn) for name, fn in calls.items()}
    print(f"# {tuned.device_name(torch.device('cpu'))}, 1 thread, torch {torch.__version__}")
    for name in calls:
        print(f"{name}: plain {plain[name]:.1f} us, enabled {routed[name]:.1f} us "
              f"(+{routed[name] - plain[name]:.1f})")
    served = hetero.stats().served
    print("served by:", {op: sorted(kernels) for op, kernels in served.items()})


if __name__ == "__main__":
    main()
