"""What a routed call costs under ``hetero.enabled()`` over the same call in plain PyTorch.

    python bench/routed_call_cost.py              # kernels as the tuned table chooses
    HETERO_TUNED=off python bench/routed_call_cost.py   # hetero's own kernels

Tiny tensors, so the time is the call's overhead: ``F.linear`` 1×64×64, a decode-sized
``scaled_dot_product_attention`` (q (1, 4, 1, 32) against k, v (1, 4, 16, 32)),
``torch.mm`` 8×8, ``F.linear`` on an input that requires grad (forward only) and a
``torch.compile``'d ``F.linear``; and a decode SDPA over a growing cache, each length
1..1024 once, as generation meets them (the native route's decision cache emptied
before each pass). One thread, best of 5 rounds of 20000 calls each, in
three settings taking turns within each round: plain, ``enabled(native=False)`` (the
torch function mode) and ``enabled(native=True)`` (the native route, the CPU default).
Prints what served the calls in each.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from functools import partial

import torch
import torch.nn.functional as F

import hetero
from hetero import native_route, tuned

CALLS = 20000
ROUNDS = 5


def per_call_us(fn) -> float:
    start = time.perf_counter()
    for _ in range(CALLS):
        fn()
    return (time.perf_counter() - start) / CALLS * 1e6


def growing_cache_us(context, k, v, q) -> float:
    """Per call: a decode step's SDPA over each cache length 1..len once, as generation
    meets them (a new key length every call), the native decision cache emptied first."""
    with context():
        if native_route.active():
            hetero._C.route.clear_decisions()
        start = time.perf_counter()
        for length in range(1, k.shape[2] + 1):
            F.scaled_dot_product_attention(q, k[:, :, :length], v[:, :, :length])
        return (time.perf_counter() - start) / k.shape[2] * 1e6


def served() -> dict:
    return {op: sorted(kernels) for op, kernels in hetero.stats().served.items()}


def main() -> None:
    torch.set_num_threads(1)
    x, w = torch.randn(1, 64), torch.randn(64, 64)
    x_grad = torch.randn(1, 64, requires_grad=True)
    a8 = torch.randn(8, 8)
    q, k, v = torch.randn(1, 4, 1, 32), torch.randn(1, 4, 16, 32), torch.randn(1, 4, 16, 32)
    compiled = torch.compile(lambda t: F.linear(t, w))
    calls = {"F.linear 1x64x64": lambda: F.linear(x, w),
             "SDPA decode (1,4,1,32) x 16 keys": lambda: F.scaled_dot_product_attention(q, k, v),
             "torch.mm 8x8": lambda: torch.mm(a8, a8),
             "F.linear 1x64x64, input requires grad": lambda: F.linear(x_grad, w),
             "compiled F.linear 1x64x64": lambda: compiled(x)}
    settings = {"enabled(native=False)": {"native": False}}
    if native_route.unavailable() is None:
        settings["enabled(native=True)"] = {"native": True}
    contexts = {"plain": nullcontext, **{s: partial(hetero.enabled, **kw)
                                         for s, kw in settings.items()}}
    best = {setting: dict.fromkeys(calls, float("inf")) for setting in contexts}
    what = {}
    for round_ in range(ROUNDS + 1):  # the first round warms up and is not kept
        for setting, context in contexts.items():
            hetero.reset_stats()
            with context():
                for name, fn in calls.items():
                    took = per_call_us(fn)
                    if round_:
                        best[setting][name] = min(best[setting][name], took)
            what[setting] = served()
    plain, routed = best.pop("plain"), best
    cache_k, cache_v = torch.randn(1, 4, 1024, 32), torch.randn(1, 4, 1024, 32)
    growing = {setting: min(growing_cache_us(context, cache_k, cache_v, q)
                            for _ in range(ROUNDS)) for setting, context in contexts.items()}
    print(f"# {tuned.device_name(torch.device('cpu'))}, 1 thread, torch {torch.__version__}")
    print("| call | plain us | " + " | ".join(f"{s} us (added)" for s in settings) + " |")
    print("|---|---|" + "---|" * len(settings))
    for name in calls:
        cells = " | ".join(f"{routed[s][name]:.2f} ({routed[s][name] - plain[name]:+.2f})"
                           for s in settings)
        print(f"| {name} | {plain[name]:.2f} | {cells} |")
    print(f"| SDPA decode over a growing cache (1..1024 keys, each length once) | "
          f"{growing['plain']:.2f} | " + " | ".join(
              f"{growing[s]:.2f} ({growing[s] - growing['plain']:+.2f})" for s in settings) + " |")
    for setting in settings:
        print(f"served under {setting}: {what[setting]}")


if __name__ == "__main__":
    main()
