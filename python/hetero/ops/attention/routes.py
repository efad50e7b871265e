"""The PyTorch call :func:`hetero.enable` routes to ``torch.ops.hetero.attention``:
``F.scaled_dot_product_attention``. Dropout, masks that need a gradient and non-4-D
inputs stay with PyTorch. ``is_causal=True`` with ``Sq != Sk`` keeps PyTorch's top-left
alignment (it becomes a mask; hetero's own ``causal`` is bottom-right)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...routing import Call, Route, real, tensors, unfit
from .numerics import attention_flops
from .torch_op import ATTENTION


def _sdpa(mode, q, k, v, attn_mask, dropout_p, is_causal, scale, enable_gqa):
    if not tensors(q, k, v):
        return None
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        return "q, k, v not 4-D (B, H, S, D)"
    (B, Hq, Sq, D), (Hkv, Sk) = q.shape, k.shape[1:3]
    if k.shape[0] != B or k.shape[3] != D or v.shape[:3] != k.shape[:3] \
            or (Hq % Hkv if enable_gqa else Hq != Hkv) or (is_causal and attn_mask is not None):
        return None
    if dropout_p != 0:
        return "dropout_p > 0"
    if scale is not None and not real(scale):
        return None
    reason = unfit(mode, q, k, v)
    if reason is not None:
        return reason
    if attn_mask is not None:
        if not tensors(attn_mask) or attn_mask.dtype not in (torch.bool, q.dtype):
            return None
        if attn_mask.requires_grad:
            return "attn_mask requires grad"
    causal = bool(is_causal)
    if causal and Sq != Sk:  # PyTorch aligns this causal mask top-left, hetero bottom-right
        attn_mask = torch.ones(Sq, Sk, dtype=torch.bool, device=q.device).tril()
        causal = False
    return Call(ATTENTION, (q, k, v, attn_mask, causal, scale))


def _sdpa_flops(args, result):
    if len(args) < 3 or not tensors(*args[:3]) or args[0].dim() < 2:
        return 0.0
    q, k, v = args[:3]
    heads = q.numel() // (q.shape[-2] * q.shape[-1] or 1)
    return attention_flops(heads, q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1], False)


ROUTES = {
    F.scaled_dot_product_attention: Route(
        "attention", _sdpa,
        ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale",
         "enable_gqa"),
        {"attn_mask": None, "dropout_p": 0.0, "is_causal": False, "scale": None,
         "enable_gqa": False}, _sdpa_flops),
}
