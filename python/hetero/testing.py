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

import math

import torch

from .ops.attention import reference_attention

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
    bad &= ~(out.double() == ref.double())  # equal infinities
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


def attention_error_bound(ref: torch.Tensor, baseline: torch.Tensor, head_dim: int,
                          seq_k: int) -> float:
    """The bound on an attention output's error against the float64 ``ref``: the
    FlashAttention rule against ``baseline`` (the same attention in the output's dtype);
    for float32/float64 with a K-aware floor ``(D + Sk + 8)·u·max|ref|``, the rounding
    of two reductions (over the head dim and over the keys). Both tensors hold only the
    elements to judge (finite ones)."""
    floor = None
    if baseline.dtype in (torch.float32, torch.float64):
        scale = max(1.0, ref.abs().max().item()) if ref.numel() else 1.0
        floor = (head_dim + seq_k + 8) * unit_roundoff(baseline.dtype) * scale
    return flash_rule_bound(ref, baseline, floor=floor)


# ------------------------------------------------------------------ attention kernels
#
# A kernel module under test provides (the convention of hetero's Triton and cpu
# attention kernels):
#   forward(q, k, v, mask, causal, scale, out) -> lse   (B, Hq, Sq) float32, natural log,
#       +inf for rows that see no key; mask None or expanded to (B, Hq, Sq, Sk)
#   backward(dout, q, k, v, out, lse, mask, causal, scale) -> (dq, dk, dv)


def attention_inputs(B: int, Hq: int, Hkv: int, Sq: int, Sk: int, D: int, Dv: int, *,
                     dtype: torch.dtype = torch.float32, device="cpu", seed: int = 0):
    """Random ``q (B, Hq, Sq, D)``, ``k (B, Hkv, Sk, D)``, ``v (B, Hkv, Sk, Dv)``."""
    return (randn(B, Hq, Sq, D, dtype=dtype, device=device, seed=seed),
            randn(B, Hkv, Sk, D, dtype=dtype, device=device, seed=seed + 1),
            randn(B, Hkv, Sk, Dv, dtype=dtype, device=device, seed=seed + 2))


def run_attention_forward(forward, q, k, v, mask=None, causal=False, scale=None, out=None):
    """``forward`` into a NaN-poisoned ``out`` (mask expanded, scale defaulted);
    returns ``(out, lse)``."""
    B, Hq, Sq, D = q.shape
    if mask is not None:
        mask = mask.expand(B, Hq, Sq, k.shape[2])
    if out is None:
        out = torch.empty(B, Hq, Sq, v.shape[3], dtype=q.dtype, device=q.device)
    poison_(out)
    scale = 1 / math.sqrt(D) if scale is None else scale
    return out, forward(q, k, v, mask, causal, scale, out)


def attention_lse_reference(q, k, mask=None, causal=False, scale=None) -> torch.Tensor:
    """float64 natural-log log-sum-exp of each row's visible scores, ``(B, Hq, Sq)``;
    ``+inf`` for rows that see no key."""
    B, Hq, Sq, D = q.shape
    Hkv, Sk = k.shape[1], k.shape[2]
    kk = k.double().repeat_interleave(Hq // Hkv, dim=1)
    s = q.double() @ kk.transpose(-1, -2) * (1 / math.sqrt(D) if scale is None else scale)
    if mask is not None:
        s = s.masked_fill(~mask, -math.inf) if mask.dtype is torch.bool else s + mask.double()
    if causal:
        lower = torch.ones(Sq, Sk, dtype=torch.bool, device=q.device).tril(Sk - Sq)
        s = s.masked_fill(~lower, -math.inf)
    lse = s.logsumexp(-1)
    return torch.where(lse == -math.inf, torch.full_like(lse, math.inf), lse)


def check_attention_forward(forward, q, k, v, mask=None, causal=False, scale=None, out=None):
    """Run ``forward`` and check ``out`` by the FlashAttention rule and ``lse`` to 1e-4
    relative (``+inf`` exactly for blind rows). Returns ``(out, lse)``."""
    out, lse = run_attention_forward(forward, q, k, v, mask, causal, scale, out)
    kw = dict(causal=causal, scale=scale, attn_mask=mask)
    ref = reference_attention(q, k, v, **kw)
    base = reference_attention(q, k, v, compute_dtype=q.dtype, **kw)
    check_within(out, ref, flash_rule_bound(ref, base))
    want = attention_lse_reference(q, k, mask, causal, scale)
    assert lse.dtype is torch.float32 and lse.shape == want.shape
    assert torch.equal(lse.isinf(), want.isinf()), "lse: +inf exactly for rows seeing nothing"
    seen = ~want.isinf()
    check_within(lse[seen], want[seen], 1e-4 * (1 + want[seen].abs()), what="lse")
    return out, lse


def attention_grads_reference(q, k, v, dout, mask=None, causal=False, scale=None,
                              compute_dtype: torch.dtype = torch.float64):
    """``(dq, dk, dv)`` by autograd through :func:`hetero.reference_attention` in
    ``compute_dtype``.

    Autograd through the oracle gives NaN for rows that see no key (0/0), whose true
    gradients are zero: those rows are left out (their dq is 0, they add nothing to
    dk/dv). Causal is folded into the mask first, so dropping rows keeps it."""
    B, Hq, Sq, D = q.shape
    Sk = k.shape[2]
    lower = torch.ones(Sq, Sk, dtype=torch.bool, device=q.device)
    if causal:
        lower = lower.tril(Sk - Sq)
    if mask is None:
        full = lower.expand(B, Hq, Sq, Sk)
    elif mask.dtype is torch.bool:
        full = (mask & lower).expand(B, Hq, Sq, Sk)
    else:
        full = mask.masked_fill(~lower, -math.inf).expand(B, Hq, Sq, Sk)
    sees = (full if full.dtype is torch.bool else full > -math.inf).any(-1)  # (B, Hq, Sq)
    rows = sees.any(0).any(0)
    if not torch.equal(sees, rows.expand_as(sees)):
        raise ValueError("attention_grads_reference: rows that see no key must be the same "
                         "for every batch and head")
    idx = rows.nonzero()[:, 0]
    leaves = [t.detach().to(compute_dtype).requires_grad_() for t in (q[:, :, idx], k, v)]
    r = reference_attention(*leaves, scale=scale, attn_mask=full[:, :, idx],
                                   compute_dtype=compute_dtype)
    gq, gk, gv = torch.autograd.grad(r, leaves, dout[:, :, idx].to(compute_dtype))
    dq = torch.zeros(q.shape, dtype=compute_dtype, device=q.device)
    dq[:, :, idx] = gq
    return dq, gk, gv


def check_attention_backward(forward, backward, q, k, v, mask=None, causal=False, scale=None,
                             dout=None):
    """Run ``forward`` then ``backward`` and check each gradient by the FlashAttention
    rule (factor 3) against float64 autograd. Returns ``(dq, dk, dv)``."""
    B, Hq, Sq, _ = q.shape
    scale = 1 / math.sqrt(q.shape[3]) if scale is None else scale
    if mask is not None:
        mask = mask.expand(B, Hq, Sq, k.shape[2])
    out, lse = run_attention_forward(forward, q, k, v, mask, causal, scale)
    if dout is None:
        dout = randn(*out.shape, dtype=q.dtype, device=q.device, seed=11)
    grads = backward(dout, q, k, v, out, lse, mask, causal, scale)
    refs = attention_grads_reference(q, k, v, dout, mask, causal, scale, torch.float64)
    bases = attention_grads_reference(q, k, v, dout, mask, causal, scale, q.dtype)
    for name, g, r, b, t in zip("qkv", grads, refs, bases, (q, k, v)):
        assert g.dtype is t.dtype and g.shape == t.shape
        check_within(g, r, flash_rule_bound(r, b, factor=3.0), what=f"d{name}")
    return grads
