"""The attention oracle and the numbers of a call: the float64 reference (forward with
its log-sum-exp, and backward), the error bound a correct kernel meets, FLOPs and the
least memory traffic."""

from __future__ import annotations

import math

import torch

from ...testing import flash_rule_bound, unit_roundoff
from .._checks import compute_dtype
from .api import AttentionArgs


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                        causal: bool = False, scale: float | None = None,
                        attn_mask: torch.Tensor | None = None,
                        compute_dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The oracle: attention computed in ``compute_dtype`` with plain torch ops,
    materialising the full score matrix. Returns a ``compute_dtype`` tensor."""
    scale = 1.0 / math.sqrt(q.shape[3]) if scale is None else scale
    return reference_attention_forward(q, k, v, attn_mask, causal, scale,
                                       compute_dtype=compute_dtype)[0]


def visible_scores(q, k, attn_mask, causal, scale, compute_dtype):
    """``(B, Hq, Sq, Sk)`` scaled, masked scores in ``compute_dtype`` (``-inf`` where a
    query may not look), with K already repeated over each GQA group."""
    Hq, Sq, Sk = q.shape[1], q.shape[2], k.shape[2]
    k = k.to(compute_dtype).repeat_interleave(Hq // k.shape[1], dim=1)
    scores = torch.matmul(q.to(compute_dtype), k.transpose(-1, -2)) * scale
    if attn_mask is not None:
        if attn_mask.dtype is torch.bool:
            scores = scores.masked_fill(~attn_mask, -math.inf)
        else:
            scores = scores + attn_mask.to(compute_dtype)
    if causal:
        lower = torch.ones(Sq, Sk, dtype=torch.bool, device=q.device).tril(Sk - Sq)
        scores = scores.masked_fill(~lower, -math.inf)
    return scores


def reference_attention_forward(q, k, v, attn_mask, causal: bool, scale: float, *,
                                compute_dtype: torch.dtype = torch.float64):
    """:func:`reference_attention` plus its ``lse (B, Hq, Sq)``: the natural-log
    log-sum-exp of each row's scaled, masked scores, ``+inf`` for a row that sees no key
    (the convention of :class:`~.api.AttentionArgs`). Returns ``(out, lse)`` in
    ``compute_dtype``."""
    Hq, Hkv = q.shape[1], k.shape[1]
    scores = visible_scores(q, k, attn_mask, causal, scale, compute_dtype)
    # the oracle may afford to materialise repeated K/V
    v = v.to(compute_dtype).repeat_interleave(Hq // Hkv, dim=1)
    row_max = scores.amax(dim=-1, keepdim=True) if scores.shape[-1] else \
        scores.new_full((*scores.shape[:-1], 1), -math.inf)
    # Rows that see no key: shift by 0 so every weight is 0, then 0/0 -> 0 below
    # (compare with == 0, not > 0, so NaN inputs still propagate).
    row_max = torch.where(row_max == -math.inf, torch.zeros_like(row_max), row_max)
    weights = torch.exp(scores - row_max)
    total = weights.sum(dim=-1, keepdim=True)
    out = torch.matmul(weights, v) / total
    out = torch.where(total == 0, torch.zeros_like(out), out)
    lse = (row_max + torch.log(total)).squeeze(-1)
    return out, torch.where(lse == -math.inf, torch.full_like(lse, math.inf), lse)


def reference_attention_backward(dout, q, k, v, out, lse, attn_mask, causal: bool,
                                 scale: float, *, compute_dtype: torch.dtype = torch.float64):
    """``(dq, dk, dv)`` in ``compute_dtype`` from the forward's ``out`` and ``lse``, by
    the FlashAttention backward equations on the materialised ``(Sq, Sk)`` matrices:
    ``P = exp(S - lse)``, ``dV = P^T dO``, ``dS = P (dO V^T - rowsum(dO out))``,
    ``dQ = scale dS K``, ``dK = scale dS^T Q`` (dK, dV summed over each GQA group).
    Rows that see no key have ``P = 0`` and add nothing."""
    B, Hq, Sq, _ = q.shape
    Hkv, Sk = k.shape[1], k.shape[2]
    group = Hq // Hkv
    dout, q, k, v, out = (t.to(compute_dtype) for t in (dout, q, k, v, out))
    probs = torch.exp(visible_scores(q, k, attn_mask, causal, scale, compute_dtype)
                      - lse.to(compute_dtype).unsqueeze(-1))
    vv = v.repeat_interleave(group, dim=1)
    dv = torch.matmul(probs.transpose(-1, -2), dout)
    dscores = probs * (torch.matmul(dout, vv.transpose(-1, -2))
                       - (dout * out).sum(-1, keepdim=True))
    dq = torch.matmul(dscores, k.repeat_interleave(group, dim=1)) * scale
    dk = torch.matmul(dscores.transpose(-1, -2), q) * scale

    def per_kv_head(t):  # (B, Hq, Sk, d) -> (B, Hkv, Sk, d)
        return t.reshape(B, Hkv, group, Sk, t.shape[-1]).sum(2)

    return dq, per_kv_head(dk), per_kv_head(dv)


# ---------------------------------------------------------------- the spec's parts
def reference(args: AttentionArgs, dtype: torch.dtype) -> torch.Tensor:
    return reference_attention_forward(args.q, args.k, args.v, args.mask, args.causal,
                                       args.scale, compute_dtype=dtype)[0]


def reference_kernel(args: AttentionArgs) -> None:
    """The ``reference`` backend's kernel: ``out`` and, when given, ``lse``."""
    out, lse = reference_attention_forward(args.q, args.k, args.v, args.mask, args.causal,
                                           args.scale, compute_dtype=compute_dtype(args.q.dtype))
    args.out.copy_(out)
    if args.lse is not None:
        args.lse.copy_(lse)


def reference_backward(args: AttentionArgs, dout: torch.Tensor):
    """The ``reference`` backend's backward kernel: ``(dq, dk, dv)`` in the inputs'
    dtypes."""
    grads = reference_attention_backward(dout, args.q, args.k, args.v, args.out, args.lse,
                                         args.mask, args.causal, args.scale,
                                         compute_dtype=compute_dtype(args.q.dtype))
    return tuple(g.to(t.dtype) for g, t in zip(grads, (args.q, args.k, args.v)))


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


def error_bound(args: AttentionArgs, exact: torch.Tensor) -> float:
    """The FlashAttention rule against PyTorch in the output's dtype, over the finite
    elements, with a K-aware floor for float32/float64."""
    dtype = args.out.dtype
    baseline = reference(args, dtype).to(dtype)
    seen = exact.isfinite()
    return attention_error_bound(exact[seen], baseline[seen], args.q.shape[3],
                                 args.k.shape[2])


def attention_flops(batch_heads: int, sq: int, sk: int, d: int, dv: int,
                    causal: bool) -> float:
    """FLOPs of the attention forward over ``batch_heads = B * Hq`` heads: two products
    over the visible (query, key) pairs (bottom-right causal when ``causal``), so
    ``2 (D + Dv)`` per pair."""
    if causal:
        pairs = sq * sk - sq * (sq - 1) // 2 if sq <= sk else sk * (sk + 1) // 2
    else:
        pairs = sq * sk
    return 2.0 * batch_heads * pairs * (d + dv)


#: the attention backward's FLOPs per forward FLOP (five matrix products against two)
BACKWARD_FLOPS_FACTOR = 2.5


def flops(args: AttentionArgs) -> float:
    B, Hq, Sq, D = args.q.shape
    return attention_flops(B * Hq, Sq, args.k.shape[2], D, args.v.shape[3], args.causal)


def min_bytes(args: AttentionArgs) -> float:
    """q, k, v read once, the output written once (the mask is not counted)."""
    return float(sum(t.numel() * t.element_size()
                     for t in (args.q, args.k, args.v, args.out)))
