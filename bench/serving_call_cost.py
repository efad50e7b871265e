"""What a decode step's serving calls cost on the CPU, natively and through their Python
paths.

    python bench/serving_call_cost.py [--rounds 7] [--json F]

A serving engine's decode step calls, per layer, :func:`hetero.write_kv_cache` (the new
token's key and value into the paged cache) and :func:`hetero.paged_attention` (the new
query over the cache). Both are served natively on CPU tensors
(``csrc/route/paged_route.cpp``); this times the step both ways in one process, rounds
interleaved: natively, and with the native entries switched off (the public functions'
Python paths: the same kernel behind hetero's Python checks and dispatch). Llama-3-8B's
attention (32 query / 8 key-value heads, head dim 128, blocks of 16), bf16, over short
caches, where the calls' fixed cost shows (it is the same over long caches, where the
kernel's memory time hides it).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import hetero
from hetero.fingerprint import cpu_model
from hetero.ops.paged_attention import api, kv_cache
from hetero.ops.paged_attention.conformance import paged_cache

HQ, HKV, D, BLOCK = 32, 8, 128, 16
CALLS = 200


def step(batch: int, context: int):
    """One decode step's two calls on a cache holding ``context`` keys per sequence."""
    k_cache, v_cache, table = paged_cache([context] * batch, BLOCK, HKV, D, D,
                                          dtype=torch.bfloat16, seed=0, spare=0)
    q = torch.randn(batch, HQ, D).bfloat16()
    new = torch.randn(batch, HKV, D).bfloat16()
    seq_lens = torch.tensor([context] * batch, dtype=torch.int32)
    last = (context - 1) // BLOCK
    slots = table[:, last].long() * BLOCK + (context - 1) % BLOCK  # each sequence's last key

    def run():
        hetero.write_kv_cache(new, new, k_cache, v_cache, slots)
        hetero.paged_attention(q, k_cache, v_cache, table, seq_lens)
    return run


def per_step_us(run) -> float:
    start = time.perf_counter()
    for _ in range(CALLS):
        run()
    return (time.perf_counter() - start) / CALLS * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json")
    args = parser.parse_args()
    entries = (api.native_paged_attention, kv_cache.native_write_kv_cache)
    if None in entries:
        raise SystemExit(f"the native entries are not available here: "
                         f"{hetero.native_route.unavailable()}")
    shapes = [(1, 256), (4, 512), (16, 1024)]
    steps = {shape: step(*shape) for shape in shapes}
    best = {(shape, way): float("inf") for shape in shapes for way in ("native", "python")}
    for round_ in range(args.rounds + 1):  # the first round warms up and is not kept
        for shape, run in steps.items():
            for way in ("native", "python"):
                on = way == "native"
                api.native_paged_attention = entries[0] if on else None
                kv_cache.native_write_kv_cache = entries[1] if on else None
                took = per_step_us(run)
                if round_:
                    best[shape, way] = min(best[shape, way], took)
    api.native_paged_attention, kv_cache.native_write_kv_cache = entries
    print(f"# {cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"best of {args.rounds} rounds of {CALLS} steps")
    print("| sequences x cached keys | Python paths us | native us | Python / native |")
    print("|---|---|---|---|")
    for shape in shapes:
        python, native = best[shape, "python"], best[shape, "native"]
        print(f"| {shape[0]} x {shape[1]} | {python:.0f} | {native:.0f} | "
              f"**{python / native:.2f}×** |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_model(), "threads": torch.get_num_threads(),
                       "rounds": args.rounds, "rows": [
                           {"sequences": b, "cached_keys": n, "python_us": best[(b, n), "python"],
                            "native_us": best[(b, n), "native"]} for b, n in shapes]},
                      f, indent=1)


if __name__ == "__main__":
    main()
