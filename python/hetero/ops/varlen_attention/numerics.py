"""The varlen_attention oracle and the numbers of a call: the float64 reference (one
materialised attention per sequence, with window and softcap), the error bound, FLOPs
and the least memory traffic. :mod:`hetero.ops.paged_attention` builds on it."""

from __future__ import annotations

import math

import torch

from .._checks import compute_dtype
from ..attention.numerics import attention_error_bound
from .api import VarlenAttentionArgs


def visible_keys(sq: int, sk: int, causal: bool, window=(-1, -1), device=None) -> torch.Tensor:
    """``(sq, sk)`` bool: which keys each query sees (bottom-right aligned, ``window``,
    causal bounding the right by 0)."""
    aligned = torch.arange(sq, device=device)[:, None] + (sk - sq)  # key of each query
    keys = torch.arange(sk, device=device)[None, :]
    visible = torch.ones(sq, sk, dtype=torch.bool, device=device)
    right = 0 if causal else window[1]
    if right >= 0:
        visible &= keys <= aligned + right
    if window[0] >= 0:
        visible &= keys >= aligned - window[0]
    return visible


def sequence_attention(q, k, v, *, causal: bool, scale: float, window=(-1, -1),
                       softcap: float = 0.0, compute_dtype: torch.dtype = torch.float64):
    """One sequence: ``q (Sq, Hq, D)``, ``k (Sk, Hkv, D)``, ``v (Sk, Hkv, Dv)`` ->
    ``(out (Sq, Hq, Dv), lse (Hq, Sq))`` in ``compute_dtype``, materialising the scores.
    ``lse`` is the natural-log log-sum-exp of each row's visible scores, ``+inf`` for a
    row that sees no key (whose output is zeros)."""
    Sq, Hq, _ = q.shape
    Sk, Hkv, Dv = v.shape
    group = Hq // Hkv
    qh = q.to(compute_dtype).transpose(0, 1)                           # (Hq, Sq, D)
    kh = k.to(compute_dtype).transpose(0, 1).repeat_interleave(group, 0)  # (Hq, Sk, D)
    vh = v.to(compute_dtype).transpose(0, 1).repeat_interleave(group, 0)
    scores = torch.matmul(qh, kh.transpose(-1, -2)) * scale
    if softcap > 0:
        scores = softcap * torch.tanh(scores / softcap)
    scores = scores.masked_fill(~visible_keys(Sq, Sk, causal, window, q.device), -math.inf)
    row_max = scores.amax(-1, keepdim=True) if Sk else scores.new_full((Hq, Sq, 1), -math.inf)
    row_max = torch.where(row_max == -math.inf, torch.zeros_like(row_max), row_max)
    weights = torch.exp(scores - row_max)
    total = weights.sum(-1, keepdim=True)
    out = torch.matmul(weights, vh) / total
    out = torch.where(total == 0, torch.zeros_like(out), out)
    lse = (row_max + torch.log(total)).squeeze(-1)
    lse = torch.where(lse == -math.inf, torch.full_like(lse, math.inf), lse)
    return out.transpose(0, 1), lse


def varlen_reference(q, k, v, starts_q: list[int], starts_k: list[int], *, causal: bool,
                     scale: float, window=(-1, -1), softcap: float = 0.0,
                     compute_dtype: torch.dtype = torch.float64):
    """Every sequence by :func:`sequence_attention`: ``(out (Tq, Hq, Dv), lse (Hq, Tq))``
    in ``compute_dtype``."""
    Tq, Hq, _ = q.shape
    out = torch.zeros((Tq, Hq, v.shape[2]), dtype=compute_dtype, device=q.device)
    lse = torch.full((Hq, Tq), math.inf, dtype=compute_dtype, device=q.device)
    for (q0, q1), (k0, k1) in zip(zip(starts_q, starts_q[1:]), zip(starts_k, starts_k[1:])):
        if q1 > q0:
            out[q0:q1], lse[:, q0:q1] = sequence_attention(
                q[q0:q1], k[k0:k1], v[k0:k1], causal=causal, scale=scale, window=window,
                softcap=softcap, compute_dtype=compute_dtype)
    return out, lse


def _forward(args: VarlenAttentionArgs, dtype: torch.dtype):
    return varlen_reference(args.q, args.k, args.v, args.cu_seqlens_q.tolist(),
                            args.cu_seqlens_k.tolist(), causal=args.causal, scale=args.scale,
                            window=args.window, softcap=args.softcap, compute_dtype=dtype)


# ---------------------------------------------------------------- the spec's parts
def reference(args: VarlenAttentionArgs, dtype: torch.dtype) -> torch.Tensor:
    return _forward(args, dtype)[0]


def reference_kernel(args: VarlenAttentionArgs) -> None:
    """The ``reference`` backend's kernel: ``out`` and, when asked, ``lse``."""
    out, lse = _forward(args, compute_dtype(args.q.dtype))
    args.out.copy_(out)
    if args.lse is not None:
        args.lse.copy_(lse)


def error_bound(args: VarlenAttentionArgs, exact: torch.Tensor) -> float:
    """The FlashAttention rule against the same attention in the output's dtype, over
    the finite elements, with a K-aware floor (the longest sequence's keys) for
    float32/float64."""
    dtype = args.out.dtype
    baseline = reference(args, dtype).to(dtype)
    seen = exact.isfinite()
    return attention_error_bound(exact[seen], baseline[seen], args.q.shape[2],
                                 max(args.max_seqlen_k, 1))


def visible_pairs(sq: int, sk: int, causal: bool, window=(-1, -1)) -> int:
    """(query, key) pairs a sequence's queries may see."""
    total = 0
    right = 0 if causal else window[1]
    for i in range(sq):
        p = i + sk - sq
        lo = max(0, p - window[0]) if window[0] >= 0 else 0
        hi = min(sk, p + right + 1) if right >= 0 else sk
        total += max(0, hi - lo)
    return total


def flops(args: VarlenAttentionArgs) -> float:
    """``2 (D + Dv)`` per visible (query, key) pair and query head."""
    starts_q, starts_k = args.cu_seqlens_q.tolist(), args.cu_seqlens_k.tolist()
    pairs = sum(visible_pairs(q1 - q0, k1 - k0, args.causal, args.window)
                for q0, q1, k0, k1 in zip(starts_q, starts_q[1:], starts_k, starts_k[1:]))
    return 2.0 * args.q.shape[1] * pairs * (args.q.shape[2] + args.v.shape[2])


def min_bytes(args: VarlenAttentionArgs) -> float:
    """q, k, v read once, the output written once."""
    return float(sum(t.numel() * t.element_size() for t in (args.q, args.k, args.v, args.out)))
