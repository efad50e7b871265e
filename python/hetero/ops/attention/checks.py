"""Checking attention kernels against the float64 oracle: the error bound, random
inputs, and checks of a kernel's forward (``out`` and ``lse``) and backward. Used by
the conformance suite, the benchmark and tests — hetero's and backend authors'.

A kernel module under test provides (the convention of hetero's Triton and cpu
attention kernels):

- ``forward(q, k, v, mask, causal, scale, out) -> lse``: ``(B, Hq, Sq)`` float32,
  natural log, ``+inf`` for rows that see no key; ``mask`` None or expanded to
  ``(B, Hq, Sq, Sk)``;
- ``backward(dout, q, k, v, out, lse, mask, causal, scale) -> (dq, dk, dv)``.
"""

from __future__ import annotations

import math

import torch

from ...testing import check_within, flash_rule_bound, poison_, randn, unit_roundoff
from .numerics import reference_attention


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
    rule (factor 3) against float64 autograd — for float32, with a floor of
    ``(D + Sq + Sk + 8)·u·max|ref|`` for the rounding of the reductions over the head dim
    and the sequences, since PyTorch's own float32 error (the rule's baseline) varies
    with the machine's BLAS and can be far below what a correct kernel incurs. Returns
    ``(dq, dk, dv)``."""
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
    reductions = q.shape[3] + Sq + k.shape[2] + 8
    for name, g, r, b, t in zip("qkv", grads, refs, bases, (q, k, v)):
        assert g.dtype is t.dtype and g.shape == t.shape
        floor = None
        if t.dtype in (torch.float32, torch.float64) and r.numel():
            floor = reductions * unit_roundoff(t.dtype) * max(1.0, r.abs().max().item())
        check_within(g, r, flash_rule_bound(r, b, factor=3.0, floor=floor), what=f"d{name}")
    return grads
