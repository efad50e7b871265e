"""The template's kernels, in plain torch so they run anywhere. A vendor replaces the
bodies with calls into their runtime (pass ``t.data_ptr()``, sizes, strides and a
stream to native code; keep torch out of the native side).

Each kernel takes its op's argument record and writes ``args.out``; read the record by
field name (fields added later default to "off"). The records document the contracts in
full (``hetero.ops.gemm.GemmArgs``, ``hetero.ops.attention.AttentionArgs``):

- gemm: ``out = alpha * (a @ b) + beta * bias`` with ``a (*batch, M, K)``,
  ``b (*batch, K, N)`` of one dtype and any strides (batch dims already broadcast,
  possibly stride 0), ``bias`` ``None`` or expanded to ``out``'s shape, ``out`` in the
  inputs' dtype or float32. Accumulate in float32; round once.
- attention: ``q (B, Hq, Sq, D)``, ``k (B, Hkv, Sk, D)``, ``v (B, Hkv, Sk, Dv)``,
  ``mask`` ``None`` or expanded to ``(B, Hq, Sq, Sk)`` (bool: True = may attend; else
  added to the scores), ``causal`` bottom-right aligned (query i sees keys
  j <= i + Sk - Sq), ``scale``. A row that sees no key is zero. NaN inputs give NaN
  where they reach.
"""

from __future__ import annotations

import math

import torch

_BLOCK_K = 256  # the reduction is split as a tiled kernel would split it


def gemm(args):
    a, b, out = args.a, args.b, args.out
    acc = torch.zeros(out.shape, dtype=torch.float32, device=out.device)
    for k0 in range(0, a.shape[-1], _BLOCK_K):
        acc += a[..., k0:k0 + _BLOCK_K].float() @ b[..., k0:k0 + _BLOCK_K, :].float()
    acc *= args.alpha
    if args.bias is not None and args.beta != 0:
        acc += args.beta * args.bias.float()
    out.copy_(acc)


def attention(args):
    q, k, v, mask, causal, scale = args.q, args.k, args.v, args.mask, args.causal, args.scale
    group = q.shape[1] // k.shape[1]
    sq, sk = q.shape[2], k.shape[2]
    keys = k.float().repeat_interleave(group, dim=1)
    values = v.float().repeat_interleave(group, dim=1)
    scores = (q.float() @ keys.transpose(-1, -2)) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, -math.inf) if mask.dtype is torch.bool \
            else scores + mask.float()
    if causal:
        visible = torch.ones(sq, sk, dtype=torch.bool, device=q.device).tril(sk - sq)
        scores = scores.masked_fill(~visible, -math.inf)
    top = scores.amax(dim=-1, keepdim=True) if sk else scores.new_zeros(*scores.shape[:-1], 1)
    top = torch.where(top == -math.inf, torch.zeros_like(top), top)  # rows that see no key
    weights = torch.exp(scores - top)
    total = weights.sum(dim=-1, keepdim=True)
    result = (weights @ values) / total
    args.out.copy_(torch.where(total == 0, torch.zeros_like(result), result))
