"""Scaled low-precision GEMM on the CPU: hetero's ``cpu`` kernels against what a user
would otherwise run, interleaved in one process, operands rotated through copies larger
than the last-level cache (so decode reads its weight from memory, as a served model
does).

For each Llama-3-8B linear layer (N, K) and M in ``--rows``, hetero's calls made as a user
writes them (no ``backend=``; ``hetero.use("cpu")`` picks the cpu kernels, so fp8 and bf16
take the native entries of ``hetero.scaled_gemm`` and ``hetero.gemm``):
  fp8   hetero.scaled_gemm (e4m3fn, row-wise scales, bf16 out) vs torch._scaled_mm,
        and vs hetero's own bf16 GEMM of the same shape (the weight in bf16);
  int8  hetero.scaled_gemm (int32 out) vs torch._int_mm.
Prints GFLOP/s, ratios and, for decode rows, the weight's read rate as a % of the memory
bandwidth measured in the same rounds (``hetero.bench.machine.BandwidthProbe``, run
between the timed calls: this machine's bandwidth drifts within seconds), the CPU named;
``--json`` keeps the numbers, with the % of the bandwidth measured once at the start.

    python bench/scaled_gemm_bench.py [--rows 1,16,64] [--shapes 4096x4096] [--json F]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

import hetero
from hetero.bench import machine

LLAMA = {"qkv": (6144, 4096), "o": (4096, 4096), "gate_up": (28672, 4096), "down": (4096, 14336)}


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def copies_for(nbytes: int) -> int:
    """Copies whose total is at least four times the last-level cache."""
    return max(1, -(-4 * machine.last_level_cache_bytes() // max(nbytes, 1)))


def timed(calls, rounds: int) -> list[list[float]]:
    """Seconds of each call in each round, interleaved: round r runs every call once.
    Each call gets the next copy of the operands (``call(n)``, n counting all calls), so
    no call reads a weight the call before it left in the cache."""
    samples = [[] for _ in calls]
    for call in calls:
        call(0)  # warm-up (and first-call decisions)
    for r in range(rounds):
        for i, call in enumerate(calls):
            start = time.perf_counter()
            call((r + 1) * len(calls) + i)
            samples[i].append(time.perf_counter() - start)
    return samples


def measure(m: int, n: int, k: int, rounds: int, probe: machine.BandwidthProbe) -> dict:
    gen = torch.Generator().manual_seed(0)
    w32 = torch.randn(n, k, generator=gen)
    x32 = torch.randn(m, k, generator=gen)
    fp8, bf16, int8 = torch.float8_e4m3fn, torch.bfloat16, torch.int8
    copies = copies_for(n * k)  # of the 1-byte weights; the bf16 ones need half as many
    w8 = [(w32 * 4).to(fp8) for _ in range(copies)]
    wb = [w.to(bf16) for w in w8[:copies_for(2 * n * k)]]
    wi = [(w32 * 40).round().clamp(-128, 127).to(int8) for _ in range(copies)]
    x8, xb = (x32 * 4).to(fp8), (x32 * 4).to(fp8).to(bf16)
    xi = (x32 * 40).round().clamp(-128, 127).to(int8)
    sx, sw = torch.rand(m, 1, generator=gen) + 0.5, torch.rand(1, n, generator=gen) + 0.5

    def pick(ws, r):
        return ws[r % len(ws)]

    calls = {
        "hetero fp8": lambda r: hetero.scaled_gemm(x8, pick(w8, r).t(), sx, sw),
        "torch._scaled_mm": lambda r: torch._scaled_mm(x8, pick(w8, r).t(), sx, sw,
                                                       out_dtype=bf16),
        "hetero bf16": lambda r: hetero.gemm(xb, pick(wb, r).t()),
        "hetero int8": lambda r: hetero.scaled_gemm(xi, pick(wi, r).t(), None, None,
                                                    out_dtype=torch.int32),
        "torch._int_mm": lambda r: torch._int_mm(xi, pick(wi, r).t()),
    }
    slow = m > 1 and m * n * k > 1 << 28  # torch._scaled_mm at ~20 GFLOP/s: fewer rounds
    rounds = 3 if slow else rounds
    with hetero.use("cpu"):  # hetero's calls as a user writes them, on its cpu kernels
        samples = dict(zip(calls, timed([*calls.values(), lambda r: probe.once()], rounds)))
    bandwidth = probe.readings[-rounds:]  # each round's (the probe ran last in each)
    seconds = {c: statistics.median(s) for c, s in samples.items()}
    weight_bytes = {"hetero fp8": n * k, "torch._scaled_mm": n * k, "hetero bf16": 2 * n * k,
                    "hetero int8": n * k, "torch._int_mm": n * k}

    def pct_of_round_bandwidth(call: str) -> float:
        return 100 * statistics.median(weight_bytes[call] / t / b
                                       for t, b in zip(samples[call], bandwidth))

    return {"m": m, "n": n, "k": k, "copies": copies,
            "seconds": seconds,
            "round_bandwidth_gbps": [b / 1e9 for b in bandwidth],
            "pct_round_bandwidth": {c: pct_of_round_bandwidth(c) for c in ("hetero fp8",
                                                                          "hetero int8")},
            "gflops": {c: 2 * m * n * k / s / 1e9 for c, s in seconds.items()},
            "weight_gbps": {c: weight_bytes[c] / s / 1e9 for c, s in seconds.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="1,16,64", help="comma-separated M")
    parser.add_argument("--shapes", default="llama",
                        help="'llama' (Llama-3-8B's layers) or NxK[,NxK...]")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    shapes = LLAMA if args.shapes == "llama" else {
        s: tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")}
    threads = torch.get_num_threads()
    bandwidth = machine.measure_cpu_peaks(threads).tbytes_per_s * 1e12
    probe = machine.BandwidthProbe(threads)
    print(f"{cpu_name()}, {threads} threads, hetero kernel set "
          f"{hetero._C.cpu_isa()}, measured bandwidth {bandwidth / 1e9:.1f} GB/s; % bw: of "
          "the bandwidth measured in the same round (median over rounds)")
    print(f"{'case':<26}{'fp8 GF/s':>9}{'vs _scaled_mm':>14}{'vs bf16':>8}{'fp8 % bw':>9}"
          f"{'int8 GF/s':>10}{'vs _int_mm':>11}{'int8 % bw':>10}{'round GB/s':>14}")
    results = []
    for m in (int(v) for v in args.rows.split(",")):
        for name, (n, k) in shapes.items():
            r = measure(m, n, k, args.rounds, probe)
            s, g, pct = r["seconds"], r["gflops"], r["pct_round_bandwidth"]
            r["fp8_pct_bandwidth"] = 100 * r["weight_gbps"]["hetero fp8"] * 1e9 / bandwidth
            reads = r["round_bandwidth_gbps"]
            print(f"{f'M={m} {name} {n}x{k}':<26}{g['hetero fp8']:>9.1f}"
                  f"{s['torch._scaled_mm'] / s['hetero fp8']:>13.1f}x"
                  f"{s['hetero bf16'] / s['hetero fp8']:>7.2f}x"
                  f"{pct['hetero fp8']:>8.0f}%{g['hetero int8']:>10.1f}"
                  f"{s['torch._int_mm'] / s['hetero int8']:>10.2f}x{pct['hetero int8']:>9.0f}%"
                  f"{f'{min(reads):.0f}-{max(reads):.0f}':>14}", flush=True)
            results.append(r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_name(), "threads": threads, "isa": hetero._C.cpu_isa(),
                       "bandwidth_gbps": bandwidth / 1e9, "torch": torch.__version__,
                       "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
