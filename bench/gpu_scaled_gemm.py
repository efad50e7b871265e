"""fp8 scaled GEMM on the GPU: ``hetero.scaled_gemm(backend="triton")`` vs
``torch._scaled_mm`` (cuBLASLt), same inputs, one process.

float8_e4m3fn operands, row-wise scales (``(M, 1)`` and ``(1, N)``), bfloat16 out, ``b``
as ``w.t()`` of a row-major ``(N, K)`` weight (the layout ``torch._scaled_mm`` wants);
``use_fast_accum=False`` on the torch side, as hetero's kernel accumulates in float32.
Shapes: 4096^3 and the Llama-3-8B linear layers at M in {16, 4096}. Each hetero result
is checked against the float64 oracle (its first 64 rows) before it is timed. Timing:
``triton.testing.do_bench`` (median, L2 flushed).

    python bench/gpu_scaled_gemm.py [--out results/gpu_scaled_gemm.json] [--quick]
"""

from __future__ import annotations

import argparse
import json

import torch

import hetero
from hetero.testing import check_against_oracle

LLAMA = {"qkv": (6144, 4096), "o": (4096, 4096), "gate_up": (28672, 4096), "down": (4096, 14336)}
FP8 = torch.float8_e4m3fn


def shapes(quick: bool) -> list[tuple[str, int, int, int]]:
    rows = [("square", 4096, 4096, 4096)]
    for m in (16, 4096):
        rows += [(name, m, n, k) for name, (n, k) in LLAMA.items()]
    return rows[:3] if quick else rows


def operands(m, n, k, seed=0):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    a = (torch.randn(m, k, device="cuda", generator=gen) * 4).to(FP8)
    w = (torch.randn(n, k, device="cuda", generator=gen) * 4).to(FP8)
    sa = torch.rand(m, 1, device="cuda", generator=gen) + 0.5
    sb = torch.rand(1, n, device="cuda", generator=gen) + 0.5
    return a, w.t(), sa, sb


def main() -> int:
    from triton.testing import do_bench

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/gpu_scaled_gemm.json")
    parser.add_argument("--quick", action="store_true", help="three shapes")
    args, _ = parser.parse_known_args()  # gpu_check.sh passes gpu_bench.py's flags too
    print(f"{torch.cuda.get_device_name()}: fp8 e4m3fn, row-wise scales, bf16 out")
    print(f"{'layer':>8} {'M':>5} {'N':>6} {'K':>6} {'hetero ms':>10} {'torch ms':>9} "
          f"{'hetero TF/s':>11} {'torch TF/s':>10} {'vs torch':>8}  ok")
    results, failed = [], 0
    for name, m, n, k in shapes(args.quick):
        a, b, sa, sb = operands(m, n, k)
        ours = lambda: hetero.scaled_gemm(a, b, sa, sb, backend="triton")  # noqa: E731
        theirs = lambda: torch._scaled_mm(a, b, sa, sb, out_dtype=torch.bfloat16)  # noqa: E731
        ok, err = True, ""
        try:
            check_against_oracle("scaled_gemm", a[:64], b, sa[:64], sb, backend="triton")
            ours()  # the full shape's own config, compiled and tuned before timing
        except Exception as exc:  # report and go on: one shape must not hide the rest
            ok, err = False, f"{type(exc).__name__}: {str(exc)[:200]}"
        t_ours = do_bench(ours, warmup=50, rep=200, return_mode="median") if ok else float("nan")
        t_torch = do_bench(theirs, warmup=50, rep=200, return_mode="median")
        flops = 2.0 * m * n * k
        row = {"layer": name, "M": m, "N": n, "K": k, "hetero_ms": t_ours, "torch_ms": t_torch,
               "hetero_tflops": flops / t_ours / 1e9, "torch_tflops": flops / t_torch / 1e9,
               "vs_torch": t_torch / t_ours, "correct": ok, "error": err}
        results.append(row)
        failed += not ok
        print(f"{name:>8} {m:5d} {n:6d} {k:6d} {t_ours:10.3f} {t_torch:9.3f} "
              f"{row['hetero_tflops']:11.1f} {row['torch_tflops']:10.1f} "
              f"{row['vs_torch']:7.2f}x  {'yes' if ok else 'NO ' + err}")
    with open(args.out, "w") as f:
        json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                   "results": results}, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
