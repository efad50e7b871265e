"""PyTorch's own attention, as a kernel of the ``torch`` backend
(:mod:`hetero.backends.pytorch`): ``F.scaled_dot_product_attention`` with hetero's
meaning where PyTorch's differs:

- ``causal`` with ``Sq != Sk`` is aligned bottom-right (PyTorch: top-left), and causal
  with a mask is allowed: both become one boolean mask;
- a row that sees no key is zeros (PyTorch: NaN);
- a NaN in a query row makes that row NaN (PyTorch's CPU kernel gives zeros for short
  sequences); a NaN in K or V is looked for on the CPU when there are several query
  rows (then the call is computed as the reference computes it), not in a decode step,
  where the scan would cost as much as the attention, nor on a GPU, where it would wait
  for the device: there PyTorch's own result stands;
- an additive mask in another dtype than the inputs is cast to theirs (SDPA takes a bool
  mask or one of the query's dtype).

``lse``, when asked for (autograd through ``torch.ops.hetero.attention``), comes from the
scores in float32, and the backward is the reference's (the FlashAttention equations on
materialised scores). Under :func:`hetero.enable` a call this kernel is chosen for runs
as PyTorch's own SDPA instead, with PyTorch's own backward.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...kernel import Kernel, Support
from .._checks import compute_dtype
from .api import FEATURES, AttentionArgs
from .numerics import reference_attention_forward, reference_backward, visible_scores

_DTYPES = frozenset({torch.float32, torch.float16, torch.bfloat16, torch.float64})


def _forward(q, k, v, args: AttentionArgs) -> torch.Tensor:
    Sq, Sk = q.shape[2], k.shape[2]
    mask, causal = args.mask, args.causal
    if Sq > 1 and q.device.type == "cpu" and (k.isnan().any() or v.isnan().any()):
        out = reference_attention_forward(q, k, v, mask, causal, args.scale,
                                          compute_dtype=compute_dtype(q.dtype))[0]
        return out.to(q.dtype)
    nan_rows = q.isnan().any(-1, keepdim=True)
    blind_rows = mask is not None or (causal and Sq > Sk)
    if causal and Sq == 1 and Sk >= 1 and mask is None:
        causal = False  # one query row, aligned bottom-right, sees every key
    elif causal and (Sq != Sk or mask is not None):
        lower = torch.ones(Sq, Sk, dtype=torch.bool, device=q.device).tril(Sk - Sq)
        if mask is None:
            mask = lower
        elif mask.dtype is torch.bool:
            mask = mask & lower
        else:
            mask = mask.masked_fill(~lower, -math.inf)
        causal = False
    if mask is not None and mask.dtype is not torch.bool and mask.dtype is not q.dtype:
        mask = mask.to(q.dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                         scale=args.scale, enable_gqa=q.shape[1] != k.shape[1])
    out = torch.where(nan_rows, torch.full((), math.nan, dtype=out.dtype), out)
    if blind_rows:  # rows that see no key: zeros, not NaN
        sees = mask.any(-1) if mask.dtype is torch.bool else (mask > -math.inf).any(-1)
        out = torch.where(sees.unsqueeze(-1), out, torch.zeros((), dtype=out.dtype))
    return out


def sdpa(args: AttentionArgs) -> None:
    q, k = args.q, args.k
    if q.shape[2] == 0:
        return
    if k.shape[2] == 0:
        args.out.zero_()
    else:
        args.out.copy_(_forward(q, k, args.v, args))
    if args.lse is not None:
        scores = visible_scores(q, k, args.mask, args.causal, args.scale,
                                compute_dtype(q.dtype))
        lse = scores.logsumexp(-1)
        args.lse.copy_(torch.where(lse == -math.inf, torch.full_like(lse, math.inf), lse))


KERNELS = (Kernel("attention", "sdpa", sdpa,
                  Support(dtypes=_DTYPES, features=frozenset(FEATURES)),
                  backward=reference_backward),)
