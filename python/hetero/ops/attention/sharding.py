"""How hetero's attention operators shard over a DTensor mesh dimension (the
``register_sharding`` form, ``None`` for arguments that are not tensors); registered by
:mod:`hetero.distributed`.

Attention is independent per batch element and per head, so besides everything
replicated it shards on the batch dim (0) or the head dim (1) of ``q``, ``k``, ``v``
(and of ``out``, ``lse`` and the gradients). Sharding heads keeps GQA aligned when the
mesh dimension divides the key/value heads, as a tensor-parallel plan does (each shard
holds ``Hq / n`` query heads and the ``Hkv / n`` key/value heads they read). A mask
follows where it has that dim and is replicated where it is broadcast.
"""

from __future__ import annotations


def _mask(mask, dim: int):
    """The mask's placement when q/k/v are sharded on ``dim`` (of 4)."""
    from torch.distributed.tensor import Replicate, Shard

    if mask is None:
        return None
    offset = dim - (4 - len(mask.shape))
    if offset < 0 or mask.shape[offset] == 1:
        return Replicate()
    return Shard(offset)


def _dims(q, k) -> tuple[int, ...]:
    """Batch always; heads unless one key/value head serves several query heads (MQA
    cannot be split across shards)."""
    return (0, 1) if k.shape[1] > 1 or q.shape[1] == 1 else (0,)


def forward_strategies(q, k, v, attn_mask=None, causal=False, scale=None) -> list:
    """``attention_forward -> (out, lse)``: replicated, or sharded on batch or heads."""
    from torch.distributed.tensor import Replicate, Shard

    R = Replicate()
    found = [([R, R], [R, R, R, None if attn_mask is None else R, None, None])]
    for dim in _dims(q, k):
        s = Shard(dim)
        found.append(([s, s], [s, s, s, _mask(attn_mask, dim), None, None]))
    return found


def backward_strategies(dout, q, k, v, out, lse, attn_mask, causal, scale) -> list:
    """``attention_backward -> (dq, dk, dv)``: as the forward."""
    from torch.distributed.tensor import Replicate, Shard

    R = Replicate()
    found = [([R, R, R], [R] * 6 + [None if attn_mask is None else R, None, None])]
    for dim in _dims(q, k):
        s = Shard(dim)
        found.append(([s, s, s], [s] * 6 + [_mask(attn_mask, dim), None, None]))
    return found
