"""GPU benchmark: hetero's GPU backends vs PyTorch in the same process, same inputs.

GEMM vs ``torch.matmul`` (cuBLAS); attention forward and backward vs
``scaled_dot_product_attention`` with its default backend choice (cuDNN's kernel on
Hopper with torch 2.11) and, as a second column, forced onto its FlashAttention-2 backend. Every hetero result is checked against the float64
oracle before it is timed. Timing: ``triton.testing.do_bench`` (CUDA events, warm-up,
L2 flushed between runs, median). FLOPs: GEMM 2MNK; attention forward 4·B·H·Sq·Sk·D
(halved when causal), backward 2.5× forward (FlashAttention's convention).

    python bench/gpu_bench.py --out results/gpu_bench.json [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import torch
import torch.nn.functional as F

import hetero
from hetero.devices import lookup
from hetero.ops.gemm.numerics import gemm_error_bound
from hetero.testing import check_within, flash_rule_bound, randn

GEMM_SHAPES = [(4096, 4096, 4096)] + [(m, n, k) for m in (16, 128, 512, 4096)
                                      for n, k in ((4096, 4096), (11008, 4096), (4096, 11008))]
ATTN = [(s, causal) for s in (1024, 4096, 8192) for causal in (False, True)]
TOKENS, HEADS, HEAD_DIM = 16384, 16, 128


def bench(fn) -> float:
    from triton.testing import do_bench

    return do_bench(fn, warmup=100, rep=400, return_mode="median") * 1e-3  # seconds


def row(kind, shape, ours_s, torch_s, flops, peak, ok, err="", flash_s=None):
    """One result; ``flash_s``: SDPA forced onto its FlashAttention-2 backend (its
    default on Hopper may be cuDNN's kernel), for reference."""
    return {"kind": kind, "shape": shape, "ours_ms": ours_s * 1e3, "torch_ms": torch_s * 1e3,
            "ours_tflops": flops / ours_s / 1e12, "torch_tflops": flops / torch_s / 1e12,
            "pct_peak": 100 * flops / ours_s / 1e12 / peak if peak else None,
            "vs_torch": torch_s / ours_s, "correct": ok, "error": err,
            "vs_sdpa_flash": flash_s / ours_s if flash_s else None}


def sdpa_flash(fn):
    """Run ``fn`` with SDPA restricted to its FlashAttention backend."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def wrapped():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return fn()
    return wrapped


def gemm_rows(backend, peak, shapes):
    rows = []
    for m, n, k in shapes:
        a = randn(m, k, dtype=torch.bfloat16, device="cuda", seed=1)
        w = randn(n, k, dtype=torch.bfloat16, device="cuda", seed=2)  # x @ w.t(), as in linear
        b = w.t()
        ok, err = True, ""
        try:
            out = hetero.gemm(a, b, backend=backend)
            if m * n * k <= 4096 ** 3:
                check_within(out, hetero.reference_gemm(a, b),
                             gemm_error_bound(a, b, out_dtype=out.dtype))
        except Exception as exc:  # report, keep going
            ok, err = False, f"{type(exc).__name__}: {str(exc)[:200]}"
        ours = bench(lambda: hetero.gemm(a, b, backend=backend)) if ok else float("nan")
        theirs = bench(lambda: torch.matmul(a, b))
        rows.append(row(f"gemm bf16 x@w.t() [{backend}]", f"{m}x{n}x{k}", ours, theirs,
                        2 * m * n * k, peak, ok, err))
    return rows


def attention_rows(backend, peak, cases, with_backward):
    from hetero.kernels.triton.attention import attention_forward
    from hetero.kernels.triton.attention_backward import attention_backward

    rows = []
    for s, causal in cases:
        b = max(1, TOKENS // s)
        q, k, v = (randn(b, HEADS, s, HEAD_DIM, dtype=torch.bfloat16, device="cuda", seed=i)
                   for i in range(3))
        flops = 4 * b * HEADS * s * s * HEAD_DIM * (0.5 if causal else 1.0)
        ok, err = True, ""
        try:
            out = hetero.attention(q, k, v, causal=causal, backend=backend)
            sub = slice(0, 1)  # the float64 oracle on one batch element keeps memory small
            ref = hetero.reference_attention(q[sub], k[sub], v[sub], causal=causal)
            base = F.scaled_dot_product_attention(q[sub], k[sub], v[sub], is_causal=causal)
            check_within(out[sub], ref, flash_rule_bound(ref, base))
        except Exception as exc:
            ok, err = False, f"{type(exc).__name__}: {str(exc)[:200]}"
        ours = bench(lambda: hetero.attention(q, k, v, causal=causal, backend=backend)) \
            if ok else float("nan")
        sdpa = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # noqa: E731
        theirs, flash = bench(sdpa), bench(sdpa_flash(sdpa))
        shape = f"B{b} H{HEADS} S{s} D{HEAD_DIM}{' causal' if causal else ''}"
        rows.append(row(f"attention fwd bf16 [{backend}]", shape, ours, theirs, flops, peak,
                        ok, err, flash))
        if not with_backward:
            continue
        scale = 1 / math.sqrt(HEAD_DIM)
        dout = randn(*q.shape, dtype=torch.bfloat16, device="cuda", seed=9)
        ok, err = True, ""
        try:
            o = torch.empty_like(q)
            lse = attention_forward(q, k, v, None, causal, scale, o)
            grads = attention_backward(dout, q, k, v, o, lse, None, causal, scale)
            qs, ks, vs = (t[:1].double().requires_grad_() for t in (q, k, v))
            ref64 = hetero.reference_attention(qs, ks, vs, causal=causal)
            ref_grads = torch.autograd.grad(ref64, (qs, ks, vs), dout[:1].double())
            ql, kl, vl = (t[:1].detach().clone().requires_grad_() for t in (q, k, v))
            base_out = F.scaled_dot_product_attention(ql, kl, vl, is_causal=causal)
            base_grads = torch.autograd.grad(base_out, (ql, kl, vl), dout[:1])
            for name, g, r, bg in zip("qkv", grads, ref_grads, base_grads):
                check_within(g[:1], r, flash_rule_bound(r, bg, factor=3.0), what=f"d{name}")
        except Exception as exc:
            ok, err = False, f"{type(exc).__name__}: {str(exc)[:200]}"
        ours = bench(lambda: attention_backward(dout, q, k, v, o, lse, None, causal,
                                                scale)) if ok else float("nan")
        qt, kt, vt = (t.detach().clone().requires_grad_() for t in (q, k, v))
        ot = F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal)
        theirs = bench(lambda: torch.autograd.grad(ot, (qt, kt, vt), dout, retain_graph=True))
        of = sdpa_flash(lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal))()
        flash = bench(lambda: torch.autograd.grad(of, (qt, kt, vt), dout, retain_graph=True))
        rows.append(row(f"attention bwd bf16 [{backend}]", shape, ours, theirs, 2.5 * flops,
                        peak, ok, err, flash))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/gpu_bench.json")
    parser.add_argument("--quick", action="store_true", help="fewer shapes")
    parser.add_argument("--backends", default="triton")
    parser.add_argument("--no-attention-autotune", action="store_true",
                        help="attention runs the first fitting config of its (sweep-ordered) "
                             "table instead of tuning each shape (~20 s each)")
    args = parser.parse_args()
    if args.no_attention_autotune:
        from hetero.kernels.triton import attention_configs

        attention_configs.AUTOTUNE = False
    if not torch.cuda.is_available():
        print("gpu_bench: no CUDA/ROCm device", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name()
    spec = lookup(name)
    peak = spec.tflops_16bit if spec else None
    gemm_shapes = GEMM_SHAPES[:4] if args.quick else GEMM_SHAPES
    cases = ATTN[:2] if args.quick else ATTN
    rows = []
    for backend in args.backends.split(","):
        entry = hetero.registry.get(backend)
        if entry is None or entry.reasons_unavailable():
            print(f"skip {backend}: {entry.reasons_unavailable() if entry else 'not installed'}")
            continue
        rows += gemm_rows(backend, peak, gemm_shapes)
        if "attention" in entry.kernels:
            rows += attention_rows(backend, peak, cases, with_backward=backend == "triton")
    meta = {"device": name, "peak_tflops_bf16": peak, "torch": torch.__version__,
            "hetero": hetero.__version__}
    try:
        import triton
        meta["triton"] = triton.__version__
    except ImportError:
        pass
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    print(f"\n{name} (peak {peak} TFLOP/s bf16 dense), torch {torch.__version__}, "
          f"triton {meta.get('triton')}")
    print(f"| {'case':<34} | {'shape':<28} | {'ours ms':>8} | {'torch ms':>8} | "
          f"{'TFLOP/s':>7} | {'% peak':>6} | {'vs torch':>8} | {'vs FA2':>6} | ok |")
    for r in rows:
        pct = f"{r['pct_peak']:.1f}" if r["pct_peak"] is not None else "-"
        fa2 = f"{r['vs_sdpa_flash']:.2f}x" if r["vs_sdpa_flash"] else "-"
        print(f"| {r['kind']:<34} | {r['shape']:<28} | {r['ours_ms']:8.3f} | "
              f"{r['torch_ms']:8.3f} | {r['ours_tflops']:7.1f} | {pct:>6} | "
              f"{r['vs_torch']:7.2f}x | {fa2:>6} | "
              f"{'ok' if r['correct'] else 'FAIL ' + r['error'][:60]} |")
    return 0 if all(r["correct"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
