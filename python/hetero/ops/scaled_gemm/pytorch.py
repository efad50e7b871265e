"""PyTorch's own scaled GEMMs, as kernels of the ``torch`` backend
(:mod:`hetero.backends.pytorch`): ``torch._scaled_mm`` for fp8 with tensor- or row-wise
scales (its CPU path refuses block scales), ``torch._int_mm`` for int8 (scales and bias
applied to its int32 result in float32). ``a`` is copied row-major first unless its
strides are exactly ``(K, 1)``: PyTorch 2.13's CPU ``_int_mm`` returns wrong sums for a
column-major ``a``, even a one-row one (strides ``(1, 1)``).

Which fp8 encodings and recipes ``torch._scaled_mm`` takes depends on the machine (on a
CPU with AMX, PyTorch 2.13 hands them to oneDNN, which refuses the FNUZ encodings):
the kernel declares what a one-time probe call per (device type, dtype, recipe) ran."""

from __future__ import annotations

import functools

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


@functools.lru_cache(maxsize=None)
def refusal(device_type: str, dtype: torch.dtype, recipe: str) -> str | None:
    """Why ``torch._scaled_mm`` on ``device_type`` refuses ``dtype`` inputs with
    ``recipe`` scales, from a probe call (``None``: it ran)."""
    if device_type == "meta":
        return None
    a = torch.ones((16, 32), device=device_type).to(dtype)
    b = torch.ones((16, 32), device=device_type).to(dtype).t()
    rows = recipe == "row"
    scale_a = torch.ones((16, 1) if rows else (), device=device_type)
    scale_b = torch.ones((1, 16) if rows else (), device=device_type)
    try:
        torch._scaled_mm(a, b, scale_a, scale_b, out_dtype=torch.float32)
    except (RuntimeError, NotImplementedError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"torch._scaled_mm on {device_type} refuses {dtype} with {recipe} scales " \
               f"here: {first_line}"
    return None


def _runs_here(traits) -> list[str]:
    """PyTorch's _scaled_mm must take the encoding and recipe on this machine (a probe)."""
    reason = refusal(traits.device.type, traits.dtype, traits.recipe)
    return [] if reason is None else [reason]


_FEATURES = frozenset({"row", "bias", "float16_out", "float32_out"})
KERNELS = (
    Kernel("scaled_gemm", "scaled_mm", scaled_mm,
           Support(dtypes=frozenset(FP8_DTYPES), features=_FEATURES, predicate=_runs_here)),
    Kernel("scaled_gemm", "int_mm", int_mm,
           Support(dtypes=frozenset({torch.int8}), features=_FEATURES | {"int32_out"})),
)
