"""Serving attention on the CPU: hetero's ``cpu`` kernels against what a user would
otherwise run, interleaved in one process, the CPU named.

paged decode (one query per sequence over a paged cache, Llama-3-8B's attention shape:
32 query / 8 key-value heads, head dim 128, blocks of 16 tokens):
  hetero.paged_attention  vs  gathering each sequence's pages and calling SDPA
                          vs  the same gather and FlexAttention, compiled
  caches rotated through copies larger than the last-level cache, so every call reads
  its keys and values from memory as a served model does; the read rate of the bytes a
  decode step must read (the keys and values) as a % of the memory bandwidth measured
  in the same round (``hetero.bench.machine.BandwidthProbe`` runs between the timed
  calls: this machine's bandwidth drifts within seconds), median over rounds, and of
  the bandwidth measured once at the start.
varlen prefill (causal, sequences of different lengths packed):
  hetero.varlen_attention  vs  a loop calling SDPA once per sequence.

    python bench/serving_attention_bench.py [--context 8192] [--batch 4] [--json F]
"""

from __future__ import annotations

import argparse
import itertools
import json

import numpy as np
import torch
import torch.nn.functional as F

import hetero
from hetero.bench import machine, timing
from hetero.fingerprint import cpu_model
from hetero.ops.paged_attention.conformance import paged_cache
from hetero.ops.varlen_attention.conformance import offsets

HQ, HKV, D, BLOCK = 32, 8, 128, 16


def timed(calls, rounds: int) -> list[timing.Samples]:
    """Seconds of each ``call(i)`` (``i`` counts its calls, to rotate operands) in each
    round, after one warm-up call each (compilation, first-call decisions), rounds
    interleaved."""
    counters = [itertools.count() for _ in calls]
    fns = [lambda call=call, n=n: call(next(n)) for call, n in zip(calls, counters)]
    for fn in fns:
        fn()
    return timing.interleaved(fns, torch.device("cpu"), budget_s=0.0, min_rounds=rounds,
                              max_rounds=rounds)


def paged_decode(context: int, batch: int, dtype, rounds: int, bandwidth: float,
                 probe: machine.BandwidthProbe) -> dict:
    lens = [context] * batch
    sample = paged_cache(lens, BLOCK, HKV, D, D, dtype=dtype, seed=0, spare=0)
    cache_bytes = 2 * sample[0].numel() * sample[0].element_size()
    copies = max(2, -(-3 * machine.last_level_cache_bytes() // cache_bytes))
    caches = [sample] + [paged_cache(lens, BLOCK, HKV, D, D, dtype=dtype, seed=c, spare=0)
                         for c in range(1, copies)]
    seq_lens = torch.tensor(lens, dtype=torch.int32)
    q = torch.randn(batch, HQ, D).to(dtype)
    blocks = -(-context // BLOCK)

    def gathered(k_cache, v_cache, table):
        pick = table[:, :blocks].long()
        k = k_cache[pick].reshape(batch, -1, HKV, D)[:, :context].transpose(1, 2)
        v = v_cache[pick].reshape(batch, -1, HKV, D)[:, :context].transpose(1, 2)
        return k, v

    def ours(r):
        k_cache, v_cache, table = caches[r % copies]
        hetero.paged_attention(q, k_cache, v_cache, table, seq_lens, backend="cpu")

    def gather_sdpa(r):
        k, v = gathered(*caches[r % copies])
        F.scaled_dot_product_attention(q[:, :, None], k, v, enable_gqa=True)

    from torch.nn.attention.flex_attention import flex_attention
    flex = torch.compile(flex_attention, dynamic=False)

    def gather_flex(r):
        k, v = gathered(*caches[r % copies])
        flex(q[:, :, None], k, v, enable_gqa=True)

    def read_probe(_):
        probe.once()

    names = ["hetero.paged_attention", "gather + SDPA", "gather + FlexAttention (compiled)"]
    calls = [ours, gather_sdpa, gather_flex]
    try:
        samples = timed([*calls, read_probe], rounds)
    except Exception as exc:  # FlexAttention's CPU compile is not available everywhere
        print(f"  (FlexAttention left out: {type(exc).__name__}: {str(exc)[:120]})")
        names, calls = names[:2], calls[:2]
        samples = timed([*calls, read_probe], rounds)
    seconds = [s.median for s in samples[:-1]]
    round_bandwidth = probe.readings[-rounds:]  # one reading per round, in order
    kv_bytes = cache_bytes * context / (blocks * BLOCK)  # the rows the step must read
    row = {"dtype": str(dtype).removeprefix("torch."), "batch": batch, "context": context,
           "copies": copies, "seconds": dict(zip(names, seconds)),
           "bandwidth_fraction": kv_bytes / seconds[0] / bandwidth,
           "round_bandwidth": round_bandwidth,
           "round_bandwidth_fraction": float(np.median(
               [kv_bytes / t / b for t, b in zip(samples[0].seconds, round_bandwidth)]))}
    print(f"paged decode {row['dtype']:>8} B={batch} context={context}: "
          + ", ".join(f"{n} {s * 1e3:.2f} ms" for n, s in zip(names, seconds))
          + f"; hetero {seconds[1] / seconds[0]:.2f}x gather+SDPA"
          + (f", {seconds[2] / seconds[0]:.2f}x gather+Flex" if len(seconds) > 2 else "")
          + f"; {kv_bytes / seconds[0] / 1e9:.1f} GB/s: "
          f"{100 * row['round_bandwidth_fraction']:.0f}% of the round's bandwidth "
          f"({min(round_bandwidth) / 1e9:.0f}-{max(round_bandwidth) / 1e9:.0f} GB/s), "
          f"{100 * row['bandwidth_fraction']:.0f}% of {bandwidth / 1e9:.1f} GB/s")
    return row


def varlen_prefill(lengths: list[int], dtype, rounds: int) -> dict:
    cu = offsets(lengths)
    total = sum(lengths)
    q = torch.randn(total, HQ, D).to(dtype)
    k, v = torch.randn(total, HKV, D).to(dtype), torch.randn(total, HKV, D).to(dtype)
    starts = cu.tolist()

    def ours(_):
        hetero.varlen_attention(q, k, v, cu, cu, max(lengths), max(lengths), causal=True,
                                backend="cpu")

    def loop(_):
        for a, z in zip(starts, starts[1:]):
            F.scaled_dot_product_attention(q[a:z].transpose(0, 1)[None],
                                           k[a:z].transpose(0, 1)[None],
                                           v[a:z].transpose(0, 1)[None], is_causal=True,
                                           enable_gqa=True)

    seconds = [s.median for s in timed([ours, loop], rounds)]
    row = {"dtype": str(dtype).removeprefix("torch."), "lengths": lengths,
           "seconds": {"hetero.varlen_attention": seconds[0], "per-sequence SDPA": seconds[1]}}
    print(f"varlen prefill {row['dtype']:>8} {len(lengths)} sequences, {total} tokens: hetero "
          f"{seconds[0] * 1e3:.2f} ms, per-sequence SDPA {seconds[1] * 1e3:.2f} ms: "
          f"{seconds[1] / seconds[0]:.2f}x")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--context", type=int, default=8192)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json")
    args = parser.parse_args()
    threads = torch.get_num_threads()
    bandwidth, how = machine.measure_bandwidth(threads)
    probe = machine.BandwidthProbe(threads)
    print(f"{cpu_model()}, {threads} threads, torch {torch.__version__}; memory bandwidth "
          f"{bandwidth / 1e9:.1f} GB/s ({how}); last-level cache "
          f"{machine.last_level_cache_bytes() >> 20} MiB")
    rows = []
    for dtype in (torch.bfloat16, torch.float32):
        rows.append(paged_decode(args.context, args.batch, dtype, args.rounds, bandwidth, probe))
    gen = torch.Generator().manual_seed(0)
    mixes = {"16 short (16-256)": torch.randint(16, 257, (16,), generator=gen).tolist(),
             "4 long (512-2048)": torch.randint(512, 2049, (4,), generator=gen).tolist()}
    for dtype in (torch.bfloat16, torch.float32):
        for lengths in mixes.values():
            rows.append(varlen_prefill(lengths, dtype, args.rounds))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_model(), "threads": threads, "bandwidth": bandwidth,
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
