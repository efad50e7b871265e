"""The PyTorch call :func:`hetero.enable` routes to ``torch.ops.hetero.varlen_attention``:
``torch.nn.attention.varlen.varlen_attn``, through the operator it calls
(``torch.ops.torch_attn._varlen_attn``; PyTorch 2.13 runs it on CUDA only, so on the
CPU hetero makes the call work). PyTorch's ``window_size`` is hetero's ``window`` and
``(-1, 0)`` is its causal mask. Calls with ``seqused_k`` or a ``block_table`` (a paged
pool), or inputs that need a gradient, stay with PyTorch."""

from __future__ import annotations

import torch

from ...routing import Call, Route, real, tensors, unfit
from .torch_op import VARLEN_ATTENTION


def _varlen_attn(mode, query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, is_causal, scale,
                 window_size, enable_gqa, seqused_k, block_table, num_splits):
    if not tensors(query, key, value, cu_seq_q, cu_seq_k):
        return None
    if seqused_k is not None or block_table is not None:
        return "seqused_k or block_table (a paged pool) given"
    if query.dim() != 3 or key.dim() != 3 or value.dim() != 3:
        return None
    if scale is not None and not real(scale):
        return None
    reason = unfit(mode, query, key, value)
    if reason is not None:
        return reason
    if any(t.requires_grad for t in (query, key, value)) and torch.is_grad_enabled():
        return "inputs require grad (hetero's varlen_attention is forward-only)"
    left, right = (-1, -1) if window_size is None else (int(w) for w in window_size)
    causal = bool(is_causal) or (left, right) == (-1, 0)
    if causal and right == 0:
        right = -1  # causal bounds the right already
    return Call(VARLEN_ATTENTION, (query, key, value, cu_seq_q, cu_seq_k, int(max_q), int(max_k),
                                   causal, scale, left, right, 0.0), _with_rng_state)


def _with_rng_state(result):
    """``(out, lse)`` -> ``(out, lse, rng_state)``, as PyTorch's operator returns."""
    out, lse = result
    return out, lse, torch.zeros(2, dtype=torch.uint64, device=out.device)


def _varlen_flops(args, result):
    """``2 (D + Dv)`` per (query, key) pair of a sequence and query head (no mask)."""
    if len(args) < 5 or not tensors(*args[:5]) or args[0].dim() != 3 or args[2].dim() < 1:
        return 0.0
    q, _, v, cu_q, cu_k = args[:5]
    pairs = sum(a * b for a, b in zip(cu_q.diff().tolist(), cu_k.diff().tolist()))
    return 2.0 * q.shape[1] * (q.shape[2] + v.shape[-1]) * pairs


class _Routes:
    """``{torch_attn._varlen_attn: Route}``, built when :func:`hetero.enable` asks: the
    operator is defined by importing ``torch.nn.attention.varlen``, which pulls in
    ``torch.distributed.tensor`` — too much to do when hetero is imported."""

    def __bool__(self) -> bool:
        return True

    def items(self):
        import torch.nn.attention.varlen  # noqa: F401 - defines torch.ops.torch_attn

        op = getattr(getattr(torch.ops, "torch_attn", None), "_varlen_attn", None)
        if op is None:  # a PyTorch without varlen_attn
            return {}.items()
        names = ("query", "key", "value", "cu_seq_q", "cu_seq_k", "max_q", "max_k",
                 "is_causal", "scale", "window_size", "enable_gqa", "seqused_k",
                 "block_table", "num_splits")
        defaults = {"is_causal": False, "scale": None, "window_size": None,
                    "enable_gqa": False, "seqused_k": None, "block_table": None,
                    "num_splits": None}
        return {op: Route("varlen_attention", _varlen_attn, names, defaults,
                          _varlen_flops)}.items()


ROUTES = _Routes()
