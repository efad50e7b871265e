"""Serving attention on the GPU: the Triton kernels (``hetero.paged_attention`` and
``hetero.varlen_attention`` with ``backend="triton"``) against what a user would
otherwise run, same inputs, one process.

paged decode (Llama-3-8B's attention: 32 query / 8 key-value heads, head dim 128,
blocks of 16 tokens, shuffled), bf16: vs gathering the pages and calling SDPA, and vs
the same gather and FlexAttention (compiled); K/V read rate in GB/s.
varlen prefill (causal, packed sequences of mixed lengths), bf16: vs PyTorch's own
``varlen_attn`` (FlashAttention) and vs one SDPA call per sequence.

Every hetero result is checked against the float64 oracle before it is timed. Timing:
``triton.testing.do_bench`` (median, L2 flushed) on CUDA; ``--smoke`` runs tiny shapes
on the CPU under ``TRITON_INTERPRET=1`` to check the script itself.

    python bench/gpu_serving_attention.py [--out results/gpu_serving.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

import hetero
from hetero.ops.paged_attention.conformance import paged_cache
from hetero.ops.varlen_attention.conformance import offsets
from hetero.testing import check_within

HQ, HKV, D, BLOCK = 32, 8, 128, 16


def bench(fn, device) -> float:
    """Median milliseconds of ``fn()``."""
    if device.type == "cuda":
        import triton.testing
        return triton.testing.do_bench(fn)
    fn()
    samples = []
    for _ in range(3):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def paged_decode(batch: int, context: int, device, dtype) -> dict:
    lens = [context] * batch
    k_cache, v_cache, table = (t.to(device) for t in paged_cache(
        lens, BLOCK, HKV, D, D, dtype=dtype, seed=0, spare=0))
    seq_lens = torch.tensor(lens, dtype=torch.int32, device=device)
    q = torch.randn(batch, HQ, D, device=device).to(dtype)
    blocks = -(-context // BLOCK)
    got = hetero.paged_attention(q, k_cache, v_cache, table, seq_lens, backend="triton")
    want = hetero.paged_attention(q[:1].cpu(), k_cache.cpu(), v_cache.cpu(), table[:1].cpu(),
                                  seq_lens[:1].cpu(), backend="reference").double()
    check_within(got[:1].cpu(), want, 8 * 2.0**-8 * want.abs().max().item() + 1e-3)

    def gathered():
        pick = table[:, :blocks].long()
        k = k_cache[pick].reshape(batch, -1, HKV, D)[:, :context].transpose(1, 2)
        v = v_cache[pick].reshape(batch, -1, HKV, D)[:, :context].transpose(1, 2)
        return k, v

    from torch.nn.attention.flex_attention import flex_attention
    flex = torch.compile(flex_attention, dynamic=False)
    times = {
        "hetero.paged_attention (triton)": bench(lambda: hetero.paged_attention(
            q, k_cache, v_cache, table, seq_lens, backend="triton"), device),
        "gather + SDPA": bench(lambda: F.scaled_dot_product_attention(
            q[:, :, None], *gathered(), enable_gqa=True), device),
        "gather + FlexAttention": bench(lambda: flex(q[:, :, None], *gathered(),
                                                     enable_gqa=True), device),
    }
    kv_bytes = 2 * batch * context * HKV * D * k_cache.element_size()
    ours = times["hetero.paged_attention (triton)"]
    print(f"paged decode B={batch} context={context}: "
          + ", ".join(f"{n} {ms:.3f} ms" for n, ms in times.items())
          + f"; K/V {kv_bytes / ours / 1e6:.0f} GB/s")
    return {"batch": batch, "context": context, "ms": times, "kv_bytes": kv_bytes}


def varlen_prefill(lengths: list[int], device, dtype) -> dict:
    cu = offsets(lengths).to(device)
    total = sum(lengths)
    q = torch.randn(total, HQ, D, device=device).to(dtype)
    k = torch.randn(total, HKV, D, device=device).to(dtype)
    v = torch.randn(total, HKV, D, device=device).to(dtype)
    longest = max(lengths)
    got = hetero.varlen_attention(q, k, v, cu, cu, longest, longest, causal=True,
                                  backend="triton")
    first = lengths[0]
    want = hetero.varlen_attention(q[:first].cpu(), k[:first].cpu(), v[:first].cpu(),
                                   offsets([first]), offsets([first]), first, first,
                                   causal=True, backend="reference").double()
    check_within(got[:first].cpu(), want, 8 * 2.0**-8 * want.abs().max().item() + 1e-3)
    starts = cu.tolist()

    def loop():
        for a, z in zip(starts, starts[1:]):
            F.scaled_dot_product_attention(q[a:z].transpose(0, 1)[None],
                                           k[a:z].transpose(0, 1)[None],
                                           v[a:z].transpose(0, 1)[None], is_causal=True,
                                           enable_gqa=True)

    times = {"hetero.varlen_attention (triton)": bench(lambda: hetero.varlen_attention(
        q, k, v, cu, cu, longest, longest, causal=True, backend="triton"), device),
        "per-sequence SDPA": bench(loop, device)}
    if device.type == "cuda":
        from torch.nn.attention.varlen import varlen_attn
        times["torch varlen_attn"] = bench(lambda: varlen_attn(
            q, k, v, cu, cu, longest, longest, window_size=(-1, 0), enable_gqa=True), device)
    print(f"varlen prefill {len(lengths)} sequences, {total} tokens: "
          + ", ".join(f"{n} {ms:.3f} ms" for n, ms in times.items()))
    return {"lengths": lengths, "ms": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny shapes on the CPU (TRITON_INTERPRET=1): the script only")
    args = parser.parse_args()
    device = torch.device("cpu" if args.smoke else "cuda")
    dtype = torch.float32 if args.smoke else torch.bfloat16  # the interpreter: no bf16 dots
    if device.type == "cuda":
        print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}")
    gen = torch.Generator().manual_seed(0)
    if args.smoke:
        decode, mixes = [(2, 64)], [[17, 5, 40]]
    else:
        decode = [(8, 8192), (32, 8192)] + ([] if args.quick else [(64, 2048), (8, 32768)])
        mixes = [torch.randint(16, 257, (64,), generator=gen).tolist(),
                 torch.randint(512, 4097, (8,), generator=gen).tolist()]
    rows = [paged_decode(b, n, device, dtype) for b, n in decode]
    rows += [varlen_prefill(lengths, device, dtype) for lengths in mixes]
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
