"""The scaled_gemm oracle and the numbers of a call: the float64 reference, the error
bound a correct kernel meets, FLOPs and the least memory traffic — and the numerics at
the edges, which every backend must follow:

- Decoding. Every fp8 value is exact in bfloat16 and float32, every int8 in int32, so
  products of decoded inputs are exact; only the float32 accumulation (K sums), the
  scaling and the final rounding lose precision. The bound is gemm's K-aware one over
  the dequantised operands; int32 results (int8 without scales) are exact.
- NaN and infinity. ``float8_e4m3fn`` has no infinity: ``0x7f``/``0xff`` are NaN, 448
  is its largest value. ``float8_e5m2`` is IEEE-like: ``0x7c`` is +inf, ``0x7d..0x7f``
  NaN, 57344 the largest finite. The FNUZ encodings have neither infinity nor negative
  zero: ``0x80`` is their only NaN (240 and 57344 their largest values). A NaN (or an
  infinity times a zero scale) makes its output row or column NaN, as in float64.
- Saturation. Inputs are already encoded, so nothing saturates on the way in; results
  round to ``out_dtype`` as a cast does: a float16 result beyond 65504 is inf, never
  clamped.
- Scales multiply as given: zero scales give zeros (NaN where an input is NaN or inf),
  negative scales flip signs. Block scales apply per 128-deep block of K before the
  blocks are summed.
"""

from __future__ import annotations

import torch

from ...testing import unit_roundoff
from .api import BLOCK, ScaledGemmArgs

#: Per fp8 dtype: (largest finite value, encodings of NaN, encoding of +inf or None).
FORMATS = {
    torch.float8_e4m3fn: (448.0, (0x7F, 0xFF), None),
    torch.float8_e5m2: (57344.0, (0x7D, 0x7E, 0x7F, 0xFD, 0xFE, 0xFF), 0x7C),
    torch.float8_e4m3fnuz: (240.0, (0x80,), None),
    torch.float8_e5m2fnuz: (57344.0, (0x80,), None),
}


def expanded_scales(args: ScaledGemmArgs, dtype: torch.dtype = torch.float64):
    """``scale_a`` and ``scale_b`` broadcastable to ``a (M, K)`` and ``b (K, N)``, in
    ``dtype``: the block recipe's blocks repeated over their 128 rows/columns."""
    sa, sb = args.scale_a.to(dtype), args.scale_b.to(dtype)
    if args.recipe == "block":
        k, n = args.a.shape[1], args.b.shape[1]
        sa = sa.repeat_interleave(BLOCK, 1)[:, :k]
        sb = sb.repeat_interleave(BLOCK, 0).repeat_interleave(BLOCK, 1)[:k, :n]
    return sa, sb


def dequantized(args: ScaledGemmArgs, dtype: torch.dtype = torch.float64):
    """``(a · scale_a, b · scale_b)`` in ``dtype``."""
    sa, sb = expanded_scales(args, dtype)
    return args.a.to(dtype) * sa, args.b.to(dtype) * sb


def reference(args: ScaledGemmArgs, compute_dtype: torch.dtype) -> torch.Tensor:
    """The oracle: dequantise, multiply and add the bias in ``compute_dtype`` (float64
    for checking others) with plain torch."""
    a, b = dequantized(args, compute_dtype)
    result = a @ b
    if args.bias is not None:
        result = result + args.bias.to(compute_dtype)
    return result


def reference_kernel(args: ScaledGemmArgs) -> None:
    """The ``reference`` backend: float64 throughout, rounded once into ``out``."""
    result = reference(args, torch.float64)
    if args.out.dtype is torch.int32:
        result = result.round()
    args.out.copy_(result)


def error_bound(args: ScaledGemmArgs, exact: torch.Tensor):
    """int32 results: exact. Else, elementwise, gemm's bound for K exact products summed
    in float32, two scalings and the bias: ``(K + 4) u32 (|a s_a| @ |b s_b|) + u32
    |bias| + (u32 + u_out) |ref|`` (plus float16's subnormal spacing)."""
    out_dtype = args.out.dtype
    if out_dtype is torch.int32:
        return 0.0
    a, b = dequantized(args)
    u = unit_roundoff(torch.float32)
    bound = (a.shape[1] + 4) * u * (a.abs() @ b.abs())
    if args.bias is not None:
        bound = bound + u * args.bias.double().abs()
    bound = bound + (u + unit_roundoff(out_dtype)) * exact.abs()
    return bound + (2.0**-25 if out_dtype is torch.float16 else 1e-300)


def flops(args: ScaledGemmArgs) -> float:
    """``2 M N K``."""
    return 2.0 * args.out.numel() * args.a.shape[1]


def min_bytes(args: ScaledGemmArgs) -> float:
    """Every operand and scale read once and the result written once."""
    parts = (args.a, args.b, args.scale_a, args.scale_b, args.bias, args.out)
    return float(sum(t.numel() * t.element_size() for t in parts if t is not None))
