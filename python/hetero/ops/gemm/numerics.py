"""The gemm oracle and the numbers of a call: the float64 reference, the error bound a
correct kernel meets, FLOPs and the least memory traffic.

The bound is the classic rounding-error bound, elementwise. A kernel that rounds its
inputs exactly to float32 and accumulates K products in float32 (any order, FMA or not)
satisfies ``|out - ref| <= (K+3) u32 |alpha| (|a| @ |b|) + u32 |beta bias|
+ (u32 + u_out) |ref|``. It grows with K and cannot be met by a kernel that drops
precision (accumulating in fp16, reading fp32 as tf32, ...). 16-bit results follow the
FlashAttention rule instead.
"""

from __future__ import annotations

import torch

from ...testing import flash_rule_bound, unit_roundoff
from .api import GemmArgs


def reference_gemm(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None,
                   alpha: float = 1.0, beta: float = 1.0, *,
                   compute_dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The oracle: the same formula computed in ``compute_dtype`` with plain torch.

    Returns a ``compute_dtype`` tensor (float64 by default, for checking others).
    """
    result = torch.matmul(a.to(compute_dtype), b.to(compute_dtype))
    if alpha != 1:
        result = result * alpha
    if bias is not None and beta != 0:
        result = result + beta * bias.to(compute_dtype)
    return result


def reference(args: GemmArgs, compute_dtype: torch.dtype) -> torch.Tensor:
    return reference_gemm(args.a, args.b, args.bias, args.alpha, args.beta,
                          compute_dtype=compute_dtype)


def gemm_error_bound(a, b, bias=None, alpha=1.0, beta=1.0, *,
                     out_dtype: torch.dtype) -> torch.Tensor:
    """Elementwise float64 bound on ``|out - ref|`` for a float32-accumulating GEMM."""
    u = unit_roundoff(torch.float32) if a.dtype is not torch.float64 else unit_roundoff(a.dtype)
    k = a.shape[-1]
    magnitude = torch.matmul(a.double().abs(), b.double().abs()) * abs(alpha)
    ref = torch.matmul(a.double(), b.double()) * alpha
    bound = (k + 3) * u * magnitude
    if bias is not None and beta != 0:
        scaled_bias = beta * bias.double()
        ref = ref + scaled_bias
        bound = bound + u * scaled_bias.abs()
    return bound + (u + unit_roundoff(out_dtype)) * ref.abs() + 1e-300


def error_bound(args: GemmArgs, exact: torch.Tensor):
    """float32/float64 results: the K-aware rounding bound, elementwise; float16/bfloat16
    results: the FlashAttention rule against PyTorch computing in that dtype."""
    out_dtype = args.out.dtype
    if out_dtype in (torch.float32, torch.float64):
        return gemm_error_bound(args.a, args.b, args.bias, args.alpha, args.beta,
                                out_dtype=out_dtype)
    baseline = reference(args, out_dtype).to(out_dtype)
    # PyTorch's own result can be non-finite where the exact one is not (its AMX bf16
    # GEMM turns a row with an inf into NaNs everywhere): those elements take the exact
    # value rounded, so they say nothing about the rounding of the rest.
    baseline = torch.where(baseline.isfinite() | ~exact.isfinite(), baseline,
                           exact.to(out_dtype))
    seen = exact.isfinite()  # the bound comes from the finite elements
    return flash_rule_bound(exact[seen], baseline[seen])


def gemm_flops(m: int, n: int, k: int, batch: int = 1) -> float:
    """FLOPs of ``batch`` products of ``(m, k) @ (k, n)``: ``2 M N K`` each."""
    return 2.0 * batch * m * n * k


def flops(args: GemmArgs) -> float:
    return gemm_flops(args.out.numel(), 1, args.a.shape[-1])


def min_bytes(args: GemmArgs) -> float:
    """Every operand read once (a batch-broadcast one once) and the result written once."""
    a, b, out = args.a, args.b, args.out
    distinct = sum(_distinct_elements(t) * t.element_size()
                   for t in (a, b, args.bias) if t is not None)
    return float(distinct + out.numel() * out.element_size())


def _distinct_elements(t: torch.Tensor) -> int:
    """Elements of ``t`` not counting broadcast (stride 0) copies."""
    count = 1
    for size, stride in zip(t.shape, t.stride()):
        if stride != 0:
            count *= size
    return count
