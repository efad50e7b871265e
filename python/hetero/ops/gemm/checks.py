"""Checking gemm kernels: the operand layouts every kernel must read through their
strides. Used by the conformance suite and tests — hetero's and backend authors'. The
error bound is :func:`hetero.ops.gemm.numerics.gemm_error_bound`."""

from __future__ import annotations

import torch

from ...testing import randn

#: Operand layouts every GEMM kernel must read through their strides, without copies.
GEMM_LAYOUTS = ("a.T", "b.T", "both.T", "sliced", "offset")
#: Those, plain operands and a ``b`` broadcast from one row (stride 0): what PyTorch's own
#: matmul takes, so what a route standing in for it must serve.
ROUTED_LAYOUTS = ("contiguous", *GEMM_LAYOUTS, "b broadcast")


def gemm_operands(layout: str, m: int, n: int, k: int, *, dtype: torch.dtype = torch.float32,
                  device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Random ``a (m, k)`` and ``b (k, n)`` laid out as ``layout`` (one of
    ``GEMM_LAYOUTS``): ``a.T``/``b.T``/``both.T`` are transposed views (``b.T`` is
    ``x @ w.t()``), ``sliced`` a strided view of ``a``, ``offset`` a view of ``b`` that
    starts inside its storage; also ``contiguous`` and ``b broadcast`` (one row expanded)
    of ``ROUTED_LAYOUTS``."""
    if layout not in ROUTED_LAYOUTS:
        raise ValueError(f"layout: expected one of {ROUTED_LAYOUTS}, got {layout!r}")

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
    if layout == "b broadcast":
        b = make(1, n, seed=7).expand(k, n)
    return a, b
