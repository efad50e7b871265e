"""hetero.write_kv_cache and the paged call's checks: slots, skips, duplicates, and a
cache written by write_kv_cache read back by paged_attention."""

from __future__ import annotations

import pytest
import torch

import hetero
from hetero.ops.varlen_attention.numerics import sequence_attention
from hetero.testing import check_within, randn


def _caches(blocks=4, block_size=4, heads=2, dim=8):
    return (torch.zeros(blocks, block_size, heads, dim),
            torch.zeros(blocks, block_size, heads, dim))


def test_write_kv_cache_places_rows_and_skips_minus_one():
    k_cache, v_cache = _caches()
    k, v = randn(3, 2, 8, seed=1), randn(3, 2, 8, seed=2)
    hetero.write_kv_cache(k, v, k_cache, v_cache, torch.tensor([5, -1, 14]))
    assert torch.equal(k_cache[1, 1], k[0]) and torch.equal(v_cache[3, 2], v[2])
    assert int((k_cache != 0).any(-1).any(-1).sum()) == 2  # the skipped row wrote nothing


@pytest.mark.parametrize("slots, message", [
    (torch.tensor([0, 16, 1]), "slot_mapping: slot 16 is beyond"),
    (torch.tensor([0, -2, 1]), "slot_mapping: slots are >= 0"),
    (torch.tensor([3, 3, 1]), "slot_mapping: a slot is written twice"),
    (torch.tensor([0, 1]), "slot_mapping: expected shape (3,)"),
])
def test_write_kv_cache_refuses_bad_slots_before_writing(slots, message):
    k_cache, v_cache = _caches()
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        hetero.write_kv_cache(randn(3, 2, 8), randn(3, 2, 8), k_cache, v_cache, slots)
    assert not k_cache.any() and not v_cache.any()


def test_write_kv_cache_names_dtype_and_shape_errors():
    k_cache, v_cache = _caches()
    with pytest.raises(TypeError, match="slot_mapping: expected dtype int64"):
        hetero.write_kv_cache(randn(1, 2, 8), randn(1, 2, 8), k_cache, v_cache,
                              torch.tensor([0], dtype=torch.int32))
    with pytest.raises(ValueError, match="k: rows"):
        hetero.write_kv_cache(randn(1, 3, 8), randn(1, 3, 8), k_cache, v_cache, torch.tensor([0]))


def test_a_cache_written_token_by_token_serves_decode():
    """Prefill 5 tokens and decode 2 more through write_kv_cache into blocks 2, 0 (in that
    order); each decode step over the cache equals attention over the tokens so far."""
    k_cache, v_cache = _caches(blocks=3, block_size=4)
    table = torch.tensor([[2, 0, -1]], dtype=torch.int32)
    keys, values = randn(7, 2, 8, seed=3), randn(7, 2, 8, seed=4)

    def slot(position):
        return int(table[0, position // 4]) * 4 + position % 4

    hetero.write_kv_cache(keys[:5], values[:5], k_cache, v_cache,
                          torch.tensor([slot(p) for p in range(5)]))
    for position in (5, 6):
        hetero.write_kv_cache(keys[position:position + 1], values[position:position + 1],
                              k_cache, v_cache, torch.tensor([slot(position)]))
        q = randn(1, 4, 8, seed=position)
        got = hetero.paged_attention(q, k_cache, v_cache, table,
                                     torch.tensor([position + 1], dtype=torch.int32),
                                     backend="cpu")
        want, _ = sequence_attention(q, keys[:position + 1], values[:position + 1], causal=True,
                                     scale=8 ** -0.5)
        check_within(got, want, 1e-5)
