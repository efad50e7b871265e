"""Helpers for checking kernels against the float64 oracle — used by hetero's own tests
and meant for backend authors' tests too.

The rules (DESIGN.md, "Numerics"):

* GEMM: the classic rounding-error bound, elementwise. A kernel that rounds its inputs
  exactly to float32 and accumulates K products in float32 (any order, FMA or not)
  satisfies ``|out - ref| <= (K+3) u32 |alpha| (|a| @ |b|) + u32 |beta bias|
  + (u32 + u_out) |ref|``. It grows with K and cannot be met by a kernel that drops
  precision (accumulating in fp16, reading fp32 as tf32, ...).
* Attention and other low-precision results: the FlashAttention rule,
  ``max|out - ref| <= 2 max|baseline - ref| + floor``, where ``baseline`` is PyTorch
  computing the same thing in the input dtype.
"""

from __future__ import annotations

import torch

_UNIT_ROUNDOFF = {torch.float64: 2.0**-53, torch.float32: 2.0**-24,
                  torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}


def unit_roundoff(dtype: torch.dtype) -> float:
    """Half the distance from 1 to the next number of ``dtype``."""
    return _UNIT_ROUNDOFF[dtype]


def randn(*shape: int, dtype: torch.dtype = torch.float32, device="cpu",
          seed: int | None = None) -> torch.Tensor:
    """Standard normal data (never zeros: zeros hide unwritten outputs and bad indexing),
    drawn in float32 then rounded to ``dtype``."""
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    return torch.randn(shape, generator=gen, dtype=torch.float32).to(device=device, dtype=dtype)


#: Operand layouts every GEMM kernel must read through their strides, without copies.
GEMM_LAYOUTS = ("a.T", "b.T", "both.T", "sliced", "offset")


def gemm_operands(layout: str, m: int, n: int, k: int, *, dtype: torch.dtype = torch.float32,
                  device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Random ``a (m, k)`` and ``b (k, n)`` laid out as ``layout`` (one of
    ``GEMM_LAYOUTS``): ``a.T``/``b.T``/``both.T`` are transposed views (``b.T`` is
    ``x @ w.t()``), ``sliced`` a strided view of ``a``, ``offset`` a view of ``b`` that
    starts inside its storage."""
    if layout not in GEMM_LAYOUTS:
        raise ValueError(f"layout: expected one of {GEMM_LAYOUTS}, got {layout!r}")

    def make(*shape, seed):
        return randn(*shape, dtype=dtype, device=device, seed=seed)

    a, b = make(m, k, seed=1), make(k, n, seed=2)
    if layout in ("a.T", "both.T"):
        a = make(k, m, seed=3).t()
    if layout in ("b.T", "both.T"):
        b = make(n, k, seed=4).t()
    if layout == "sliced":
        a = make(2 * m, 3 * k, seed=5)[::2, ::3]
    if layout == "offset":
        b = make(k + 3, n + 5, seed=6)[3:, 5:]
    return a, b


def poison_(t: torch.Tensor) -> torch.Tensor:
    """Fill ``t`` with NaN so that any element a kernel forgets to write is caught."""
    return t.fill_(float("nan"))


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


def check_within(out: torch.Tensor, ref: torch.Tensor, bound, what: str = "out") -> None:
    """Raise ``AssertionError`` unless every element of ``out`` is within ``bound`` of
    ``ref`` (NaN in ``out`` where ``ref`` is finite fails: it is an unwritten element or
    a numerical failure). ``bound`` is a tensor or a number."""
    if out.shape != ref.shape:
        raise AssertionError(f"{what}: shape {tuple(out.shape)} != reference {tuple(ref.shape)}")
    if out.numel() == 0:
        return
    err = (out.double() - ref.double()).abs()
    bad = ~(err <= bound)  # NaN compares False, so NaN is bad
    bad &= ~(torch.isnan(out.double()) & torch.isnan(ref.double()))
    if bad.any():
        index = tuple(int(i) for i in bad.nonzero()[0])
        b = bound[index] if isinstance(bound, torch.Tensor) else bound
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {out.numel()} elements out of bound; first at "
            f"{index}: got {out[index].item()!r}, reference {ref[index].item()!r}, "
            f"error {err[index].item():.3g} > bound {float(b):.3g}")


def flash_rule_bound(ref: torch.Tensor, baseline: torch.Tensor, *, factor: float = 2.0,
                     floor: float | None = None) -> float:
    """``factor * max|baseline - ref| + floor``: the error a reasonable implementation in
    ``baseline``'s dtype incurs, with slack. ``floor`` defaults to a few units of
    roundoff of ``baseline``'s dtype at the reference's scale."""
    if ref.numel() == 0:
        return 0.0
    scale = max(1.0, ref.abs().max().item())
    floor = 4 * unit_roundoff(baseline.dtype) * scale if floor is None else floor
    return factor * (baseline.double() - ref.double()).abs().max().item() + floor
