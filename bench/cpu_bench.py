"""The native cpu backend vs PyTorch on this CPU: GEMM (fp32, bf16, fp16) and attention
forward (prefill and decode), interleaved in one process.

Every row: median seconds of PyTorch and hetero (rounds alternate between the two so
drift hits both), GFLOP/s, % of this CPU's measured peak for the row's dtype on the same
threads (fp32 FMA; bf16 pair dot where the CPU has AVX512_BF16:
``hetero.bench.machine.measure_cpu_peaks``), ratio = torch time / hetero time. Each hetero result is checked
against the float64 oracle first; a wrong result aborts the run. A second table
(``--ops low-precision``) times hetero's own fp32, bf16 and fp16 ``x @ w.t()`` against
each other, interleaved the same way.

FLOPs: GEMM 2*M*N*K. Attention 4*B*H*S*S*D (two products), halved when causal; decode
4*Hq*Sk*D.

    python bench/cpu_bench.py [--quick] [--ops gemm low-precision attention decode]
                              [--json bench/results/cpu.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys

import torch
import torch.nn.functional as F

import hetero
from hetero import _C, fingerprint, tuned
from hetero.backends import cpu
from hetero.bench import machine, timing
from hetero.ops.gemm.numerics import gemm_error_bound
from hetero.testing import check_within, flash_rule_bound, randn


def interleaved(fns, rounds):
    """Median seconds of each callable over ``rounds`` interleaved rounds, after one
    warm-up call each (workspaces, thread pools, first-touch pages)."""
    for fn in fns:
        fn()
    samples = timing.interleaved(fns, torch.device("cpu"), budget_s=0.0, min_rounds=rounds,
                                 max_rounds=rounds)
    return [s.median for s in samples]


def rounds_for(flops):
    return 3 if flops > 2e10 else 5 if flops > 1e9 else 15


def gemm_rows(quick):
    square = [(1024, 1024, 1024), (2048, 2048, 2048)]
    # M = 1 is a decode step, the others the prefill sizes.
    llm = [(m, n, k) for m in (1, 16, 128, 512) for n, k in ((4096, 4096), (11008, 4096), (4096, 11008))]
    if quick:
        square, llm = square[:1], [(16, 4096, 4096), (128, 4096, 4096)]
    for m, n, k in square:
        yield "fp32", "x @ w", torch.float32, m, n, k
    for m, n, k in llm:
        yield "fp32", "x @ w.t()", torch.float32, m, n, k
    for dtype, name in ((torch.bfloat16, "bf16"), (torch.float16, "fp16")):
        for m in (128,) if quick else (1, 16, 64, 128, 512):
            yield name, "x @ w.t()", dtype, m, 4096, 4096
        for m in (128,) if quick else (1, 64, 128, 512):
            yield name, "x @ w", dtype, m, 4096, 4096


def checked_gemm_operands(dtype, layout, m, n, k):
    """Random ``x (m, k)`` and ``b (k, n)`` (``w.t()`` of an ``(n, k)`` weight for
    ``x @ w.t()``, contiguous for ``x @ w``), after checking hetero's product on them."""
    x = randn(m, k, dtype=dtype, seed=1)
    w = randn(n, k, dtype=dtype, seed=2)
    b = w.t() if layout == "x @ w.t()" else w.t().contiguous()
    out = hetero.gemm(x, b, backend="cpu")
    sub = (slice(0, 64), slice(0, 64))  # the oracle on a corner keeps the check cheap
    check_within(out[sub], hetero.reference_gemm(x[sub[0]], b[:, sub[1]]),
                 gemm_error_bound(x[sub[0]], b[:, sub[1]], out_dtype=dtype))
    return x, b


def bench_gemm(dtype, layout, m, n, k):
    x, b = checked_gemm_operands(dtype, layout, m, n, k)
    flops = 2 * m * n * k
    t_torch, t_hetero = interleaved([lambda: torch.matmul(x, b), lambda: hetero.gemm(x, b, backend="cpu")],
                                    rounds_for(flops))
    return flops, t_torch, t_hetero


def low_precision_rows(quick):
    for m in (16, 128) if quick else (1, 16, 128, 512):
        yield m, 4096, 4096


def bench_low_precision(m, n, k):
    """hetero's fp32, bf16 and fp16 ``x @ w.t()`` on one shape, interleaved three ways,
    so the issue's "low precision >= 0.8x our own fp32" compares calls seconds apart
    rather than table rows minutes apart."""
    operands = [checked_gemm_operands(dtype, "x @ w.t()", m, n, k)
                for dtype in (torch.float32, torch.bfloat16, torch.float16)]
    calls = [lambda x=x, b=b: hetero.gemm(x, b, backend="cpu") for x, b in operands]
    return 2 * m * n * k, *interleaved(calls, rounds_for(2 * m * n * k))


def low_precision_table(quick, rows):
    """Print the low-precision table and append its rows to ``rows``."""
    print("\n| hetero x @ w.t() | fp32 ms | bf16 ms | fp16 ms | bf16 / fp32 | fp16 / fp32 |")
    print("|---|---|---|---|---|---|")
    for m, n, k in low_precision_rows(quick):
        flops, t32, t_bf16, t_fp16 = bench_low_precision(m, n, k)
        rows.append({"op": "gemm-low-precision", "case": f"x @ w.t() {m}×{n}×{k}", "flops": flops,
                     "fp32_s": t32, "bf16_s": t_bf16, "fp16_s": t_fp16,
                     "bf16_vs_fp32": t32 / t_bf16, "fp16_vs_fp32": t32 / t_fp16})
        print(f"| {m}×{n}×{k} | {1e3 * t32:.2f} | {1e3 * t_bf16:.2f} | {1e3 * t_fp16:.2f} | "
              f"**{t32 / t_bf16:.2f}×** | **{t32 / t_fp16:.2f}×** |", flush=True)


def attention_rows(quick):
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        for H in (8,) if quick else (8, 16):
            for S in (1024,) if quick else (1024, 2048, 4096):
                for D in (64, 128):
                    for causal in (False, True):
                        yield name, dtype, H, S, D, causal


def bench_attention(dtype, H, S, D, causal):
    q, k, v = (randn(1, H, S, D, dtype=dtype, seed=s) for s in (1, 2, 3))
    out = hetero.attention(q, k, v, causal=causal, backend="cpu")
    rows = slice(S - 32, S)  # check the last query rows (they see the most keys)
    ref = hetero.reference_attention(q[:, :, rows], k, v, causal=causal)
    base = hetero.reference_attention(q[:, :, rows], k, v, causal=causal, compute_dtype=dtype)
    check_within(out[:, :, rows], ref, flash_rule_bound(ref, base))
    flops = 4 * H * S * S * D // (2 if causal else 1)
    t_torch, t_hetero = interleaved(
        [lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
         lambda: hetero.attention(q, k, v, causal=causal, backend="cpu")], rounds_for(flops))
    return flops, t_torch, t_hetero


def decode_rows(quick):
    # One new token against a KV cache: Llama-3-8B (GQA 32/8) and Falcon-7B (MQA 71/1).
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        for Hq, Hkv, Sk, D in [(32, 8, 1024, 128)] if quick else [(32, 8, 1024, 128), (32, 8, 4096, 128),
                                                                   (71, 1, 2048, 64)]:
            yield name, dtype, Hq, Hkv, Sk, D


def bench_decode_attention(dtype, Hq, Hkv, Sk, D):
    q = randn(1, Hq, 1, D, dtype=dtype, seed=1)
    k, v = (randn(1, Hkv, Sk, D, dtype=dtype, seed=s) for s in (2, 3))
    out = hetero.attention(q, k, v, backend="cpu")  # one query sees every key: causal or not
    ref = hetero.reference_attention(q, k, v)
    check_within(out, ref, flash_rule_bound(ref, hetero.reference_attention(q, k, v, compute_dtype=dtype)))
    flops = 4 * Hq * Sk * D
    t_torch, t_hetero = interleaved(
        [lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True),
         lambda: hetero.attention(q, k, v, backend="cpu")], rounds_for(flops))
    return flops, t_torch, t_hetero


OPS = ("gemm", "low-precision", "attention", "decode")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few rows of each kind")
    parser.add_argument("--json", help="write the rows and the environment to this file")
    parser.add_argument("--ops", nargs="+", choices=OPS, default=OPS,
                        help="which tables to run (default: all)")
    args = parser.parse_args(argv)

    threads = cpu.num_threads()
    peaks = machine.measure_cpu_peaks(threads)
    gflops_peak = {name: 1e3 * peaks.for_dtype(dtype) for name, dtype in
                   (("fp32", "float32"), ("bf16", "bfloat16"), ("fp16", "float16"))}
    env = {"cpu": tuned.device_name(torch.device("cpu")), "cpu_flags": fingerprint.cpu_flags(),
           "threads": threads, "isa": _C.cpu_isa(),
           "peak_gflops": {k: round(v, 1) for k, v in gflops_peak.items()},
           "torch": torch.__version__, "python": platform.python_version()}
    print(f"# {env}", flush=True)
    if set(args.ops) - {"low-precision"}:
        print("| op | dtype | case | torch ms | hetero ms | torch GFLOP/s | hetero GFLOP/s | "
              "hetero % peak | hetero / torch |")
        print("|---|---|---|---|---|---|---|---|---|")
    rows = []

    def emit(op, dtype, case, flops, t_torch, t_hetero):
        row = {"op": op, "dtype": dtype, "case": case, "flops": flops, "torch_s": t_torch,
               "hetero_s": t_hetero, "torch_gflops": flops / t_torch / 1e9,
               "hetero_gflops": flops / t_hetero / 1e9, "speedup": t_torch / t_hetero}
        row["hetero_pct_peak"] = 100 * row["hetero_gflops"] / gflops_peak[dtype]
        rows.append(row)
        print(f"| {op} | {dtype} | {case} | {1e3 * t_torch:.2f} | {1e3 * t_hetero:.2f} | "
              f"{row['torch_gflops']:.1f} | {row['hetero_gflops']:.1f} | "
              f"{row['hetero_pct_peak']:.0f}% | **{row['speedup']:.2f}×** |", flush=True)

    for name, layout, dtype, m, n, k in gemm_rows(args.quick) if "gemm" in args.ops else ():
        emit("gemm", name, f"{layout} {m}×{n}×{k}", *bench_gemm(dtype, layout, m, n, k))
    for name, dtype, H, S, D, causal in attention_rows(args.quick) if "attention" in args.ops else ():
        case = f"B=1 H={H} S={S} D={D}{' causal' if causal else ''}"
        emit("attention", name, case, *bench_attention(dtype, H, S, D, causal))
    for name, dtype, Hq, Hkv, Sk, D in decode_rows(args.quick) if "decode" in args.ops else ():
        case = f"decode B=1 H={Hq}/{Hkv} Sq=1 Sk={Sk} D={D}"
        emit("attention", name, case, *bench_decode_attention(dtype, Hq, Hkv, Sk, D))

    if "low-precision" in args.ops:
        low_precision_table(args.quick, rows)
    write_json(args.json, env, rows)
    return 0


def write_json(path: str | None, env: dict, rows: list) -> None:
    """Save a run (when ``path`` is given) as ``{"environment": ..., "rows": [...]}``."""
    if path:
        with open(path, "w") as f:
            json.dump({"environment": env, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
