"""hetero as a transformers attention implementation: ``attn_implementation="hetero"``.

:func:`register` adds ``"hetero"`` to transformers' ``AttentionInterface`` (and its
mask interface, so models hand it padding masks rather than 4-D score masks). The
attention function serves the three ways transformers calls attention:

- ordinary ``generate()``/forward: ``(B, H, S, D)`` tensors, causal, with the model's
  sliding window and softcap, and a padding mask when the batch is padded. Without a
  softcap, decode steps (queries and keys in different numbers) and unpadded calls
  without a window go to :func:`hetero.attention` as they lie, padded keys and a
  window's masked; a prompt with padding or a window, and any call with a softcap, has
  the rows each sequence keeps packed and run by :func:`hetero.varlen_attention`, which
  skips them;
- continuous batching (``model.generate_batch`` with ``"paged|hetero"``) reading the
  cache by index: the packed batch and its ``cu_seq_lens`` go to
  :func:`hetero.varlen_attention`;
- continuous batching with a block table (transformers' decode fast path, which
  :func:`register` lets ``"hetero"`` use): the new keys and values are written with
  :func:`hetero.write_kv_cache` and the decode step runs on
  :func:`hetero.paged_attention` over transformers' own pages and block table.

A call autograd must record (training, or a forward outside ``torch.no_grad()``) runs on
``torch.ops.hetero.attention``, which brings hetero's backward, padded keys and a window
masked; one with a softcap, which no hetero operator differentiates, in plain PyTorch
operations, counted in :func:`hetero.stats` with the reason. Dropout and attention sinks
stay with transformers' SDPA implementation.
"""

from __future__ import annotations

import math

import torch

from .. import counters
from ..ops.attention import attention
from ..ops.attention.numerics import attention_flops
from ..ops.paged_attention import paged_attention, write_kv_cache
from ..ops.varlen_attention import varlen_attention
from ..ops.varlen_attention.api import windowed

NAME = "hetero"


def _window(sliding_window) -> tuple[int, int]:
    """transformers' ``sliding_window`` (a query sees itself and the ``w - 1`` keys
    before it) as hetero's ``window``."""
    return (-1, -1) if not sliding_window else (int(sliding_window) - 1, -1)


def _packed(t: torch.Tensor) -> torch.Tensor:
    """``(B, H, S, D)`` -> ``(B * S, H, D)``."""
    return t.transpose(1, 2).reshape(-1, t.shape[1], t.shape[3])


def _offsets(counts: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.pad(counts.cumsum(0), (1, 0)).to(torch.int32)


def _cache_step(query, key, value, scale, softcap, window, kwargs):
    """Decode with a block table: write the new keys and values into transformers'
    pages, then attend over them."""
    k_cache, v_cache, table = kwargs["k_cache"], kwargs["v_cache"], kwargs["block_table"]
    cu_k = kwargs["cu_seq_lens_k"]
    q, k, v = _packed(query), _packed(key), _packed(value)  # one new token per sequence
    seq_lens = (cu_k[1:q.shape[0] + 1] - cu_k[:q.shape[0]]).to(torch.int32)
    position = (seq_lens - 1).long()  # where each new token goes
    block_size = k_cache.shape[1]
    blocks = table[:q.shape[0]].gather(1, (position // block_size)[:, None])[:, 0].long()
    write_kv_cache(k, v, k_cache, v_cache, blocks * block_size + position % block_size)
    return paged_attention(q, k_cache, v_cache, table[:q.shape[0]].to(torch.int32), seq_lens,
                           scale=scale, window=window, softcap=softcap)


def _key_mask(padding, window: tuple[int, int], causal: bool, Sq: int, Sk: int, device):
    """The bool mask ``(B or 1, 1, Sq or 1, Sk)`` of the keys each query may see beyond
    causality: real tokens of ``padding (B, Sk)`` and, for ``window``, keys within it of
    the query's aligned position ``i + Sk - Sq``; ``None`` where that is every key."""
    mask = None if padding is None else padding.bool()[:, None, None, :]
    left, right = window
    if windowed(causal, window):
        keys = torch.arange(Sk, device=device)
        aligned = torch.arange(Sq, device=device)[:, None] + (Sk - Sq)
        band = torch.ones(Sq, Sk, dtype=torch.bool, device=device)
        if left >= 0:
            band &= keys >= aligned - left
        if right >= 0:
            band &= keys <= aligned + right
        mask = band if mask is None else mask & band
    return mask


def _padded(query, key, value, mask, causal, scale, softcap, window):
    """A padded batch (``mask (B, Sk)``, 1 = a real token): each sequence's real keys and
    its real queries (the last ``Sq`` positions) packed, padding rows left zero."""
    B, H, Sq, _ = query.shape
    keep_k = mask.bool()
    keep_q = keep_k[:, -Sq:]
    q = query.transpose(1, 2)[keep_q]
    k, v = key.transpose(1, 2)[keep_k], value.transpose(1, 2)[keep_k]
    counts_q, counts_k = keep_q.sum(1), keep_k.sum(1)
    out = varlen_attention(q, k, v, _offsets(counts_q), _offsets(counts_k),
                           int(counts_q.max()), int(counts_k.max()), causal=causal,
                           scale=scale, window=window, softcap=softcap)
    full = out.new_zeros((B, Sq, H, value.shape[3]))
    full[keep_q] = out
    return full


def _recorded(query, key, value, padding, causal: bool, scale, softcap: float,
              window: tuple[int, int]) -> torch.Tensor:
    """``(B, Hq, S, Dv)`` for a call autograd records: ``torch.ops.hetero.attention``
    over the tensors as they lie, or, with a softcap, PyTorch's own operations."""
    Sq, Sk = query.shape[2], key.shape[2]
    mask = _key_mask(padding, window, causal, Sq, Sk, query.device)
    if not softcap:
        return torch.ops.hetero.attention(query, key, value, mask, causal, scale)
    counters.record_fallback("attention", "softcap in a call autograd records (no hetero "
                             "operator differentiates it)", attention_flops(
                                 query.shape[0] * query.shape[1], Sq, Sk, query.shape[3],
                                 value.shape[3], causal))
    group = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(group, 1), value.repeat_interleave(group, 1)
    scores = query @ key.transpose(-1, -2) * (scale or 1 / math.sqrt(query.shape[3]))
    scores = softcap * torch.tanh(scores / softcap)
    sees = torch.ones(Sq, Sk, dtype=torch.bool, device=query.device)
    if causal:
        sees = sees.tril(Sk - Sq)
    if mask is not None:
        sees = sees & mask
    probs = scores.float().masked_fill(~sees, -math.inf).softmax(-1).nan_to_num(0.0)
    return probs.to(value.dtype) @ value  # a row that sees no key: zeros, as hetero gives


def attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0,
                      scaling: float | None = None, sliding_window: int | None = None,
                      softcap: float | None = None, **kwargs):
    """transformers' attention-function protocol: ``query (B, Hq, S, D)``, ``key`` and
    ``value (B, Hkv, Sk, D)`` -> ``(out (B, S, Hq, Dv), None)``."""
    if dropout or hasattr(module, "sinks") or (
            attention_mask is not None and attention_mask.dim() != 2):
        from transformers.integrations.sdpa_attention import sdpa_attention_forward
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    window = _window(sliding_window)
    softcap = float(softcap or 0.0)
    if kwargs.get("block_table") is not None and kwargs.get("k_cache") is not None:
        out = _cache_step(query, key, value, scaling, softcap, window, kwargs)
        return out.view(query.shape[0], -1, *out.shape[-2:]), None
    if kwargs.get("cu_seq_lens_q") is not None:  # a packed batch (continuous batching)
        cu_q, cu_k = (kwargs[n].to(torch.int32) for n in ("cu_seq_lens_q", "cu_seq_lens_k"))
        out = varlen_attention(_packed(query), _packed(key), _packed(value), cu_q, cu_k,
                               int(kwargs.get("max_length_q") or query.shape[2]),
                               int(kwargs.get("max_length_k") or key.shape[2]),
                               causal=True, scale=scaling, window=window, softcap=softcap)
        return out.view(query.shape[0], -1, *out.shape[-2:]), None
    B, _, Sq, _ = query.shape
    Sk = key.shape[2]
    padded = attention_mask is not None and not bool(attention_mask.all())
    causal = getattr(module, "is_causal", True)
    if torch.is_grad_enabled() and (query.requires_grad or key.requires_grad
                                    or value.requires_grad):
        out = _recorded(query, key, value, attention_mask if padded else None, causal,
                        scaling, softcap, window)
        return out.transpose(1, 2).contiguous(), None
    if not softcap and (Sq != Sk or (window == (-1, -1) and not padded)):
        # The heads and sequences read where transformers keeps them: packing them for
        # varlen_attention copies the keys and values, which for a decode step costs more
        # than the attention. Padded keys, and a window's, are masked (computing over
        # them costs less than copying the cache to skip them; a prompt, as many queries
        # as keys, is packed below instead, skipping them).
        mask = _key_mask(attention_mask if padded else None, window, causal, Sq, Sk,
                         query.device)
        out = attention(query, key, value, causal=causal, scale=scaling, attn_mask=mask)
        return out.transpose(1, 2).contiguous(), None
    if padded:
        return _padded(query, key, value, attention_mask, causal, scaling, softcap, window), None
    out = varlen_attention(_packed(query), _packed(key), _packed(value),
                           torch.arange(B + 1, dtype=torch.int32) * Sq,
                           torch.arange(B + 1, dtype=torch.int32) * Sk, Sq, Sk, causal=causal,
                           scale=scaling, window=window, softcap=softcap)
    return out.view(B, Sq, *out.shape[-2:]), None


def register() -> None:
    """Make ``attn_implementation="hetero"`` (and ``"paged|hetero"``) available to
    transformers models, and let continuous batching's decode fast path (a block table
    into its paged cache, normally kept for FlashAttention on CUDA) run with it."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

    AttentionInterface.register(NAME, attention_forward)
    AttentionMaskInterface.register(NAME, flash_attention_mask)  # padding masks, 2-D
    _allow_continuous_batching()


def _ours(config) -> bool:
    return getattr(config, "_attn_implementation", None) in (NAME, f"paged|{NAME}")


def _allow_continuous_batching() -> None:
    """transformers' continuous batching takes only the implementations it knows (eager,
    SDPA, FlashAttention) and keeps its block-table decode path for FlashAttention on
    CUDA/XPU. Let ``"hetero"`` in, and keep the decode path on for it where every
    attention type of the model supports block tables (transformers' own check). Left
    alone when transformers' internals differ from what this expects."""
    try:
        from transformers.generation.continuous_batching import continuous_api, initialization
    except ImportError:
        return
    manager = getattr(continuous_api, "ContinuousBatchingManager", None)
    switch = getattr(manager, "switch_to_cb_friendly_attn", None)
    if switch is not None and not getattr(switch, "_hetero", False):
        def keep_hetero(self, model, *args, **kwargs):
            if _ours(model.config):
                return None  # hetero serves packed and paged calls itself
            return switch(self, model, *args, **kwargs)

        keep_hetero._hetero = True
        manager.switch_to_cb_friendly_attn = keep_hetero
    original = getattr(initialization, "ensure_decode_fast_path_is_available", None)
    if original is None or getattr(original, "_hetero", False):
        return

    def ensure(config, cb_config, user_requested):
        if _ours(config):
            supported = all(initialization.ATTN_TYPE_TO_ALLOCATOR[t].supports_block_table
                            for t in initialization.group_layers_by_attn_type(config))
            if not supported:
                cb_config.max_blocks_per_request = 0
            return None
        return original(config, cb_config, user_requested)

    ensure._hetero = True
    initialization.ensure_decode_fast_path_is_available = ensure
    if getattr(continuous_api, "ensure_decode_fast_path_is_available", None) is original:
        continuous_api.ensure_decode_fast_path_is_available = ensure
