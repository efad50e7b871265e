"""The paged_attention oracle and the numbers of a call: each sequence's keys and values
gathered from its blocks, then :mod:`hetero.ops.varlen_attention`'s float64 reference;
the error bound, FLOPs and the least memory traffic."""

from __future__ import annotations

import torch

from .._checks import compute_dtype
from ..attention.numerics import attention_error_bound
from ..varlen_attention.numerics import sequence_attention, visible_pairs
from .api import PagedAttentionArgs


def gather_sequence(cache: torch.Tensor, block_table: torch.Tensor, b: int,
                    length: int) -> torch.Tensor:
    """Keys (or values) ``0:length`` of sequence ``b``: ``(length, Hkv, D)``."""
    block_size = cache.shape[1]
    blocks = block_table[b, :-(-length // block_size)].long()
    return cache[blocks].reshape(-1, *cache.shape[2:])[:length]


def query_starts(args: PagedAttentionArgs) -> list[int]:
    """Where each sequence's queries start in ``q`` (``B + 1`` entries)."""
    if args.cu_seqlens_q is None:
        return list(range(args.q.shape[0] + 1))
    return args.cu_seqlens_q.tolist()


def _forward(args: PagedAttentionArgs, dtype: torch.dtype) -> torch.Tensor:
    starts = query_starts(args)
    out = torch.zeros((args.q.shape[0], args.q.shape[1], args.v_cache.shape[3]), dtype=dtype,
                      device=args.q.device)
    for b, length in enumerate(args.seq_lens.tolist()):
        q0, q1 = starts[b], starts[b + 1]
        if q1 > q0:
            k = gather_sequence(args.k_cache, args.block_table, b, length)
            v = gather_sequence(args.v_cache, args.block_table, b, length)
            out[q0:q1] = sequence_attention(args.q[q0:q1], k, v, causal=args.causal,
                                            scale=args.scale, window=args.window,
                                            softcap=args.softcap, compute_dtype=dtype)[0]
    return out


def reference(args: PagedAttentionArgs, dtype: torch.dtype) -> torch.Tensor:
    return _forward(args, dtype)


def reference_kernel(args: PagedAttentionArgs) -> None:
    args.out.copy_(_forward(args, compute_dtype(args.q.dtype)))


def error_bound(args: PagedAttentionArgs, exact: torch.Tensor) -> float:
    """The FlashAttention rule against the same attention in the output's dtype, with a
    K-aware floor (the longest sequence's keys) for float32/float64."""
    dtype = args.out.dtype
    baseline = reference(args, dtype).to(dtype)
    seen = exact.isfinite()
    return attention_error_bound(exact[seen], baseline[seen], args.q.shape[2],
                                 max(args.seq_lens.tolist(), default=1) or 1)


def flops(args: PagedAttentionArgs) -> float:
    """``2 (D + Dv)`` per visible (query, key) pair and query head."""
    starts = query_starts(args)
    pairs = sum(visible_pairs(starts[b + 1] - starts[b], length, args.causal, args.window)
                for b, length in enumerate(args.seq_lens.tolist()))
    return 2.0 * args.q.shape[1] * pairs * (args.q.shape[2] + args.v_cache.shape[3])


def min_bytes(args: PagedAttentionArgs) -> float:
    """q read and out written once, and each sequence's keys and values read once."""
    keys = sum(args.seq_lens.tolist())
    kv_row = (args.k_cache.shape[2] * args.k_cache.shape[3]
              + args.v_cache.shape[2] * args.v_cache.shape[3]) * args.k_cache.element_size()
    return float(keys * kv_row + (args.q.numel() + args.out.numel()) * args.q.element_size())
