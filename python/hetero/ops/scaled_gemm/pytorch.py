"""PyTorch's own scaled GEMMs, as kernels of the ``torch`` backend
(:mod:`hetero.backends.pytorch`): ``torch._scaled_mm`` for fp8 with tensor- or row-wise
scales (its CPU path refuses block scales), ``torch._int_mm`` for int8 (scales and bias
applied to its int32 result in float32). ``a`` is copied row-major first unless its
strides are exactly ``(K, 1)``: PyTorch 2.13's CPU ``_int_mm`` returns wrong sums for a
column-major ``a``, even a one-row one (strides ``(1, 1)``)."""

from __future__ import annotations

import torch

from ...kernel import Kernel, Support
from .api import FP8_DTYPES, ScaledGemmArgs


def _empty_reduction(args: ScaledGemmArgs) -> bool:
    """K = 0: PyTorch's kernels refuse it; the result is the bias (or zeros)."""
    if args.a.shape[1]:
        return False
    args.out.zero_()
    if args.bias is not None:
        args.out.add_(args.bias)
    return True


def scaled_mm(args: ScaledGemmArgs) -> None:
    if args.out.numel() == 0 or _empty_reduction(args):
        return
    torch._scaled_mm(args.a, args.b, args.scale_a.contiguous(), args.scale_b.contiguous(),
                     bias=args.bias, out_dtype=args.out.dtype, out=args.out)


def int_mm(args: ScaledGemmArgs) -> None:
    if args.out.numel() == 0 or _empty_reduction(args):
        return
    a = args.a
    if a.stride() != (a.shape[1], 1):
        a = torch.empty(a.shape, dtype=a.dtype).copy_(a)
    if args.out.dtype is torch.int32:
        torch._int_mm(a, args.b, out=args.out)
        return
    result = torch._int_mm(a, args.b).float() * args.scale_a * args.scale_b
    if args.bias is not None:
        result += args.bias
    args.out.copy_(result)


_FEATURES = frozenset({"row", "bias", "float16_out", "float32_out"})
KERNELS = (
    Kernel("scaled_gemm", "scaled_mm", scaled_mm,
           Support(dtypes=frozenset(FP8_DTYPES), features=_FEATURES)),
    Kernel("scaled_gemm", "int_mm", int_mm,
           Support(dtypes=frozenset({torch.int8}), features=_FEATURES | {"int32_out"})),
)
