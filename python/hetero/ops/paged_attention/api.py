"""``hetero.paged_attention``: attention over a paged KV cache (vLLM's and FlashInfer's
layout, FlashAttention's ``flash_attn_with_kvcache`` with a block table) — its argument
record, dispatch traits, input checks and the public function.

Shapes: caches ``(num_blocks, block_size, Hkv, D)`` (values ``Dv``); ``block_table``
int32 ``(B, max_blocks)``; ``seq_lens`` int32 ``(B,)``: key ``j`` of sequence ``b`` is
row ``j % block_size`` of block ``block_table[b, j // block_size]``, for
``j < seq_lens[b]``. Without ``cu_seqlens_q``, ``q`` is ``(B, Hq, D)``: one decode
token per sequence; with it, ``q`` is packed ``(Tq, Hq, D)`` (chunked prefill,
speculative decoding): sequence ``b``'s queries are rows ``cu[b]:cu[b + 1]``, the last
tokens of its keys. The mask (causal by default, window, softcap) is
:mod:`hetero.ops.varlen_attention`'s, per sequence.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ... import dispatch
from ...kernel import dispatch_traits
from .. import _checks
from ..varlen_attention.api import (check_cu_seqlens, check_heads, check_int32,
                                    check_mask_args, check_max_seqlen, check_packed, windowed)

OP = "paged_attention"
# chunked: several queries per sequence (cu_seqlens_q given)
FEATURES = ("causal", "gqa", "window", "softcap", "head_dim_v", "chunked")
BUCKET_DIMS = ()


class PagedAttentionArgs(NamedTuple):
    """What a paged_attention kernel receives (every value checked).

    ``q``: ``(B, Hq, D)``, or ``(Tq, Hq, D)`` with ``cu_seqlens_q``; ``k_cache``
    ``(num_blocks, block_size, Hkv, D)``, ``v_cache`` ``(num_blocks, block_size, Hkv,
    Dv)``: ``q``'s dtype, any strides. ``block_table`` int32 ``(B, max_blocks)``:
    the blocks a sequence uses are in ``[0, num_blocks)``; ``seq_lens`` int32 ``(B,)``
    at most ``max_blocks * block_size``. ``cu_seqlens_q``: ``None`` or int32
    ``(B + 1,)``; ``max_seqlen_q``: 1, or at least the longest query count. ``out``
    shaped like ``q`` with ``Dv``. ``scale``, ``causal``, ``window``, ``softcap`` as
    for :class:`~hetero.ops.varlen_attention.VarlenAttentionArgs`."""

    q: torch.Tensor
    k_cache: torch.Tensor
    v_cache: torch.Tensor
    block_table: torch.Tensor
    seq_lens: torch.Tensor
    cu_seqlens_q: torch.Tensor | None
    max_seqlen_q: int
    out: torch.Tensor
    scale: float
    causal: bool = True
    window: tuple[int, int] = (-1, -1)
    softcap: float = 0.0


@dispatch_traits
class PagedAttentionTraits(NamedTuple):
    """What dispatch knows about a ``paged_attention`` call: dtype, head dims, the
    caches' ``block_size``, and which features it uses."""

    op: str
    device: torch.device
    dtype: torch.dtype
    head_dim: int
    head_dim_v: int
    block_size: int
    causal: bool
    gqa: bool
    window: bool
    softcap: bool
    chunked: bool
    align: int | None
    bucket: None = None

    LABELS = {"head_dim": "head dim", "head_dim_v": "value head dim",
              "block_size": "block size"}

    @property
    def features(self) -> frozenset[str]:
        return frozenset(name for name, used in (
            ("causal", self.causal), ("gqa", self.gqa), ("window", self.window),
            ("softcap", self.softcap), ("chunked", self.chunked),
            ("head_dim_v", self.head_dim_v != self.head_dim)) if used)


def check_cache(cache, name: str, dtype: torch.dtype, device: torch.device) -> None:
    _checks.tensor(cache, name)
    if cache.dim() != 4:
        raise ValueError(f"{name}: expected 4 dims (num_blocks, block_size, Hkv, D), got "
                         f"shape {tuple(cache.shape)}")
    _checks.same_dtype(cache, name, dtype, "q")
    _checks.same_device(cache, name, device, "q")


def check_block_table(block_table, seq_lens, num_blocks: int, block_size: int,
                      device: torch.device) -> list[int]:
    """The checked ``seq_lens`` as a list: each within the table's capacity, and every
    block a sequence uses in ``[0, num_blocks)``."""
    _checks.tensor(block_table, "block_table")
    if block_table.dim() != 2:
        raise ValueError(f"block_table: expected 2 dims (B, max_blocks), got shape "
                         f"{tuple(block_table.shape)}")
    check_int32(block_table, "block_table", tuple(block_table.shape), device)
    batch, max_blocks = block_table.shape
    check_int32(seq_lens, "seq_lens", (batch,), device)
    lengths = seq_lens.tolist()
    capacity = max_blocks * block_size
    for b, length in enumerate(lengths):
        if not 0 <= length <= capacity:
            raise ValueError(f"seq_lens: sequence {b} has {length} keys; the block table "
                             f"holds 0 to {capacity} ({max_blocks} blocks of {block_size})")
    used = torch.arange(max_blocks, device=device)[None, :] * block_size < seq_lens[:, None]
    blocks = block_table[used]
    if blocks.numel() and (int(blocks.min()) < 0 or int(blocks.max()) >= num_blocks):
        bad = int(blocks[(blocks < 0) | (blocks >= num_blocks)][0])
        raise ValueError(f"block_table: block id {bad} is out of range for caches of "
                         f"{num_blocks} blocks")
    return lengths


_decisions = dispatch.decisions
_current_scope = dispatch.current_scope.get
#: ``hetero_route::paged_attention``: the decode step served natively, ``None`` for any
#: call it leaves to the Python path (:func:`hetero.native_entries.paged_attention_entry`,
#: set at import).
native_paged_attention = None


def prepare(q, k_cache, v_cache, block_table, seq_lens, cu_seqlens_q, max_seqlen_q, causal,
            scale, window, softcap, out, backend) -> tuple[tuple, PagedAttentionArgs]:
    """Validate and normalise; return the dispatch key and the kernel's record."""
    chunked = cu_seqlens_q is not None
    check_packed(q, "q", "(Tq, Hq, D)" if chunked else "(B, Hq, D)")
    dtype = _checks.float_dtype(q, "q")
    device = q.device
    check_cache(k_cache, "k_cache", dtype, device)
    check_cache(v_cache, "v_cache", dtype, device)
    num_blocks, block_size = k_cache.shape[:2]
    if tuple(v_cache.shape[:2]) != (num_blocks, block_size):
        raise ValueError(f"v_cache: blocks {tuple(v_cache.shape[:2])} must match k_cache's "
                         f"{(num_blocks, block_size)}")
    if block_size == 0:
        raise ValueError("k_cache: block_size must be at least 1")
    Hq, Hkv, D, Dv = check_heads(q, k_cache, v_cache, (2, 3), "k_cache", "v_cache")
    lengths = check_block_table(block_table, seq_lens, num_blocks, block_size, device)
    batch = len(lengths)
    if chunked:
        starts = check_cu_seqlens(cu_seqlens_q, "cu_seqlens_q", q.shape[0], device, batch)
        counts = [b - a for a, b in zip(starts, starts[1:])]
        max_seqlen_q = check_max_seqlen(max(counts, default=0) if max_seqlen_q is None
                                        else max_seqlen_q, "max_seqlen_q", counts)
    else:
        if q.shape[0] != batch:
            raise ValueError(f"q: expected one query per sequence, {batch} rows (the block "
                             f"table's), got {q.shape[0]}")
        if max_seqlen_q not in (None, 1):
            raise ValueError(f"max_seqlen_q: without cu_seqlens_q each sequence has one "
                             f"query, got {max_seqlen_q}")
        max_seqlen_q = 1
    scale, window, softcap = check_mask_args(causal, scale, window, softcap, D)
    _checks.no_autograd(OP, q, k_cache, v_cache)
    out = _checks.output(out, (q.shape[0], Hq, Dv), dtype, device,
                         (("q", q), ("k_cache", k_cache), ("v_cache", v_cache)))
    if backend is not None and type(backend) is not str:
        backend = tuple(backend)
    align = (_checks.alignment(q, k_cache, v_cache, out) if dispatch.wants_alignment[OP]
             else None)
    key = (OP, device, dtype, D, Dv, block_size, causal, Hq != Hkv, windowed(causal, window),
           softcap > 0, chunked, align, None, backend, _current_scope())
    return key, PagedAttentionArgs(q, k_cache, v_cache, block_table, seq_lens, cu_seqlens_q,
                                   max_seqlen_q, out, scale, causal, window, softcap)


def paged_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                    block_table: torch.Tensor, seq_lens: torch.Tensor, *,
                    cu_seqlens_q: torch.Tensor | None = None, max_seqlen_q: int | None = None,
                    causal: bool = True, scale: float | None = None,
                    window: tuple[int, int] = (-1, -1), softcap: float = 0.0,
                    out: torch.Tensor | None = None,
                    backend: str | list[str] | None = None) -> torch.Tensor:
    """Attention of new queries over keys and values in a paged cache, on the best
    backend for the call.

    Args:
        q: ``(B, Hq, D)`` (one decode token per sequence), or packed ``(Tq, Hq, D)`` with
            ``cu_seqlens_q``; float32/float16/bfloat16 (float64 on ``reference``).
        k_cache: ``(num_blocks, block_size, Hkv, D)``, ``Hq % Hkv == 0``, ``q``'s dtype.
        v_cache: ``(num_blocks, block_size, Hkv, Dv)``.
        block_table: int32 ``(B, max_blocks)``: the cache blocks of each sequence, in
            order (entries past a sequence's last block are not read).
        seq_lens: int32 ``(B,)``: keys per sequence (the new tokens' included).
        cu_seqlens_q: int32 ``(B + 1,)``: sequence ``b``'s queries are rows
            ``cu[b]:cu[b + 1]`` of ``q``, the last tokens of its keys.
        max_seqlen_q: with ``cu_seqlens_q``, at least the longest query count
            (default: computed).
        causal: query ``i`` of a sequence sees keys ``j <= i + seq_len - Sq``.
        scale, window, softcap: as for :func:`hetero.varlen_attention`.
        out: optional tensor shaped like ``q`` (with ``Dv``) to write into.
        backend: a backend name or priority list for this call only.

    Returns:
        ``out``, or a new ``(B or Tq, Hq, Dv)`` tensor. Rows that see no key are zero.

    Raises:
        TypeError, ValueError: bad input, naming the argument.
        hetero.DispatchError: no candidate can serve the call.
    """
    if native_paged_attention is not None and cu_seqlens_q is None and max_seqlen_q is None \
            and out is None and backend is None:
        try:
            if type(causal) is bool and type(softcap) is float and type(window) is tuple \
                    and len(window) == 2 and type(window[0]) is int and type(window[1]) is int \
                    and (scale is None or type(scale) is float) and not (
                        torch.is_grad_enabled() and (q.requires_grad or k_cache.requires_grad
                                                     or v_cache.requires_grad)):
                result = native_paged_attention(
                    q, k_cache, v_cache, block_table, seq_lens,
                    1.0 / math.sqrt(q.shape[-1]) if scale is None else scale, causal,
                    window[0], window[1], softcap)
                if result is not None:
                    return result
        except Exception:  # noqa: BLE001 - the Python path below reports it, naming the argument
            pass
    key, args = prepare(q, k_cache, v_cache, block_table, seq_lens, cu_seqlens_q,
                        max_seqlen_q, causal, scale, window, softcap, out, backend)
    (_decisions.get(key) or dispatch.resolve(key, args))(args)
    return args.out
