"""``hetero.attention``: scaled dot-product attention on whichever backend serves it.

``out = softmax(q @ k^T * scale + mask) @ v``, per (batch, query head), where query head
``h`` reads key/value head ``h // (Hq // Hkv)`` (grouped-query / multi-query attention).

Shapes: ``q (B, Hq, Sq, D)``, ``k (B, Hkv, Sk, D)``, ``v (B, Hkv, Sk, Dv)``, result
``(B, Hq, Sq, Dv)``. ``causal`` lets query ``i`` see keys ``j <= i + (Sk - Sq)``: the
mask is aligned bottom-right, as when decoding with a KV cache. A query row that can
see no key returns zeros, not NaN.
"""

from __future__ import annotations

import math

import torch

from .. import dispatch, tuned
from . import _checks

_cache = dispatch._cache  # the hot path reads the cache directly
_current_scope = dispatch.current_scope.get


def _prepare(q, k, v, causal, scale, attn_mask, out, backend):
    """Validate and normalise; return the dispatch key and the kernel's arguments."""
    for t, name in ((q, "q"), (k, "k"), (v, "v")):
        _checks.tensor(t, name)
        if t.dim() != 4:
            layout = "(B, Hq, Sq, D)" if name == "q" else "(B, Hkv, Sk, D)"
            raise ValueError(f"{name}: expected 4 dims {layout}, got shape {tuple(t.shape)}")
    dtype = _checks.float_dtype(q, "q")
    device = q.device
    for t, name in ((k, "k"), (v, "v")):
        _checks.same_dtype(t, name, dtype, "q")
        _checks.same_device(t, name, device, "q")
    B, Hq, Sq, D = q.shape
    _, Hkv, Sk, _ = k.shape
    Dv = v.shape[3]
    if k.shape[0] != B or v.shape[0] != B:
        raise ValueError(f"k, v: batch sizes {k.shape[0]}, {v.shape[0]} must equal q's {B}")
    if k.shape[3] != D:
        raise ValueError(f"k: head dim {k.shape[3]} must equal q's {D}")
    if tuple(v.shape[1:3]) != (Hkv, Sk):
        raise ValueError(f"v: heads and length {tuple(v.shape[1:3])} must equal k's "
                         f"{(Hkv, Sk)}")
    if Hkv == 0 or Hq % Hkv:
        raise ValueError(f"k: {Hkv} key/value heads must divide q's {Hq} heads")
    if D == 0:
        raise ValueError("q: head dim must be at least 1")
    if not isinstance(causal, bool):
        raise TypeError(f"causal: expected bool, got {type(causal).__name__}")
    scale = 1.0 / math.sqrt(D) if scale is None else _checks.real_scalar(scale, "scale")
    mask_kind = None
    if attn_mask is not None:
        _checks.tensor(attn_mask, "attn_mask")
        if attn_mask.dtype is torch.bool:
            mask_kind = "bool"
        elif attn_mask.dtype is dtype or attn_mask.dtype is torch.float32:
            mask_kind = "additive"
        else:
            raise TypeError(f"attn_mask: expected bool (True = may attend) or additive "
                            f"{_checks.dtype_name(dtype)}/float32, got "
                            f"{_checks.dtype_name(attn_mask.dtype)}")
        _checks.same_device(attn_mask, "attn_mask", device, "q")
        if attn_mask.dim() > 4:
            raise ValueError(f"attn_mask: expected at most 4 dims, got {attn_mask.dim()}")
        try:
            attn_mask = attn_mask.expand(B, Hq, Sq, Sk)
        except RuntimeError:
            raise ValueError(f"attn_mask: shape {tuple(attn_mask.shape)} does not broadcast "
                             f"to (B, Hq, Sq, Sk) = {(B, Hq, Sq, Sk)}") from None
    _checks.no_autograd("attention", q, k, v, attn_mask)
    out_shape = (B, Hq, Sq, Dv)
    if out is None:
        out = torch.empty(out_shape, dtype=dtype, device=device)
    else:
        _checks.check_out(out, out_shape, (dtype,), device,
                          (("q", q), ("k", k), ("v", v), ("attn_mask", attn_mask)))
    if backend is not None and type(backend) is not str:
        backend = tuple(backend)
    align = (_checks.alignment(q, k, v, attn_mask, out)
             if dispatch.alignment_matters["attention"] else None)
    bucket = (tuned.attention_bucket(Sq, Sk)
              if dispatch.bucket_matters["attention"] else None)
    key = ("attention", device, dtype, D, Dv, causal, Hq != Hkv, mask_kind, align, bucket,
           backend, _current_scope())
    return key, (q, k, v, attn_mask, causal, scale, out)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False,
              scale: float | None = None, attn_mask: torch.Tensor | None = None,
              out: torch.Tensor | None = None,
              backend: str | list[str] | None = None) -> torch.Tensor:
    """Scaled dot-product attention on the best backend for the call.

    Args:
        q: ``(B, Hq, Sq, D)``, float32/float16/bfloat16 (float64 on ``reference``).
        k: ``(B, Hkv, Sk, D)`` with ``Hq % Hkv == 0``; same dtype/device as ``q``.
        v: ``(B, Hkv, Sk, Dv)``.
        causal: query ``i`` sees keys ``j <= i + Sk - Sq`` (bottom-right aligned).
        scale: multiplies ``q @ k^T``; default ``1 / sqrt(D)``.
        attn_mask: broadcastable to ``(B, Hq, Sq, Sk)``; bool (``True`` = may attend)
            or additive (``q``'s dtype or float32). Combines with ``causal``.
        out: optional ``(B, Hq, Sq, Dv)`` tensor of ``q``'s dtype to write into.
        backend: a backend name or priority list for this call only.

    Returns:
        ``out``, or a new ``(B, Hq, Sq, Dv)`` tensor. Rows that see no key are zero.

    Raises:
        TypeError, ValueError: bad input, naming the argument.
        hetero.DispatchError: no candidate can serve the call (see ``.decision``).
    """
    key, args = _prepare(q, k, v, causal, scale, attn_mask, out, backend)
    fn = _cache.get(key) or dispatch.resolve(key)
    fn(*args)
    return args[-1]


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                        causal: bool = False, scale: float | None = None,
                        attn_mask: torch.Tensor | None = None,
                        compute_dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The oracle: attention computed in ``compute_dtype`` with plain torch ops,
    materialising the full score matrix. Returns a ``compute_dtype`` tensor."""
    scale = 1.0 / math.sqrt(q.shape[3]) if scale is None else scale
    return reference_attention_forward(q, k, v, attn_mask, causal, scale,
                                       compute_dtype=compute_dtype)[0]


def _visible_scores(q, k, attn_mask, causal, scale, compute_dtype):
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
    (the convention of every kernel's ``training`` pair). Returns ``(out, lse)`` in
    ``compute_dtype``."""
    Hq, Hkv = q.shape[1], k.shape[1]
    scores = _visible_scores(q, k, attn_mask, causal, scale, compute_dtype)
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
    probs = torch.exp(_visible_scores(q, k, attn_mask, causal, scale, compute_dtype)
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
