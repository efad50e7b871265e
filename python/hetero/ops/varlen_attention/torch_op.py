"""``torch.ops.hetero.varlen_attention(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
max_seqlen_k, causal, scale, window_left, window_right, softcap) -> (out, lse)``:
:func:`hetero.varlen_attention` as a torch operator with a fake impl, for the calls
:mod:`.routes` takes over; ``lse (Hq, Tq)`` float32 is each row's log-sum-exp (PyTorch's
``varlen_attn`` returns it). It records no autograd: the serving ops are forward-only."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ...routing import BridgeOp
from ...torch_ops import plain_torch, serve
from .._checks import STAND_IN
from .api import prepare
from .numerics import flops, varlen_reference


@torch.library.custom_op("hetero::varlen_attention", mutates_args=())
def varlen_attention(q: Tensor, k: Tensor, v: Tensor, cu_seqlens_q: Tensor,
                     cu_seqlens_k: Tensor, max_seqlen_q: int, max_seqlen_k: int, causal: bool,
                     scale: Optional[float], window_left: int, window_right: int,
                     softcap: float) -> tuple[Tensor, Tensor]:
    """:func:`hetero.varlen_attention` with the log-sum-exp: ``(out (Tq, Hq, Dv), lse
    (Hq, Tq))``."""
    with plain_torch():
        key, args = prepare(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                            causal, scale, (window_left, window_right), softcap, None, None,
                            lse=True)
        if serve(key, args, flops(args)) is None:
            out, lse = varlen_reference(q, k, v, cu_seqlens_q.tolist(), cu_seqlens_k.tolist(),
                                        causal=causal, scale=args.scale, window=args.window,
                                        softcap=softcap)
            return out.to(q.dtype), lse.float()
        return args.out, args.lse


@varlen_attention.register_fake
def _varlen_attention_fake(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                           causal, scale, window_left, window_right, softcap):
    return (q.new_empty((q.shape[0], q.shape[1], v.shape[2])),
            q.new_empty((q.shape[1], q.shape[0]), dtype=torch.float32))


def _prepare(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal, scale,
             window_left, window_right, softcap):
    return prepare(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal,
                   scale, (window_left, window_right), softcap, STAND_IN, None, lse=True)


#: ``torch.ops.hetero.varlen_attention`` for :mod:`.routes`.
VARLEN_ATTENTION = BridgeOp(varlen_attention, _prepare, lambda record: (record.out, record.lse))
