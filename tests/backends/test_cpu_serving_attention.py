"""The cpu backend's varlen and paged attention on every kernel set, against the float64
oracle: awkward lengths, the flash-decoding splits (few sequences: heads, then keys over
long caches), chunked prefill, windows and softcap, strided views, poisoned outputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import hetero
from hetero.ops.paged_attention.conformance import paged_cache
from hetero.ops.paged_attention.numerics import reference as paged_reference
from hetero.ops.varlen_attention.conformance import offsets
from hetero.ops.varlen_attention.numerics import varlen_reference
from hetero.testing import check_within, flash_rule_bound, poison_, randn

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MASKS = [dict(causal=False), dict(causal=True), dict(causal=True, window=(4, 0)),
         dict(causal=False, window=(3, 2)), dict(causal=True, softcap=2.0)]


def _bound(ref, dtype, scale_keys):
    baseline_error = (ref.to(dtype).double() - ref).abs().max().item() if ref.numel() else 0
    floor = (64 + scale_keys) * torch.finfo(torch.float32).eps * max(1.0, ref.abs().max().item())
    return 6 * baseline_error + floor


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mask", MASKS, ids=lambda m: "-".join(f"{k}{v}" for k, v in m.items()))
@pytest.mark.parametrize("lens", [([1, 0, 7, 13], [1, 5, 7, 40]), ([300, 2], [300, 600])],
                         ids=["short", "long"])
def test_varlen_matches_the_oracle(isa, dtype, mask, lens):
    lens_q, lens_k = lens
    q = randn(sum(lens_q), 8, 64, dtype=dtype, seed=1)
    k = randn(sum(lens_k), 2, 64, dtype=dtype, seed=2)
    v = randn(sum(lens_k), 2, 64, dtype=dtype, seed=3)
    cq, ck = offsets(lens_q), offsets(lens_k)
    out = poison_(torch.empty_like(q))
    hetero.varlen_attention(q, k, v, cq, ck, max(lens_q), max(lens_k), out=out, backend="cpu",
                            **mask)
    scale = 1 / math.sqrt(64)
    ref, _ = varlen_reference(q, k, v, cq.tolist(), ck.tolist(), scale=scale,
                              **{"window": (-1, -1), "softcap": 0.0, **mask})
    check_within(out, ref, _bound(ref, dtype, max(lens_k)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_varlen_runs_sequences_whole_and_spread_on_two_threads(isa, dtype):
    """On two threads a sequence holding most of the batch spreads over both and the
    rest run whole, largest first: every row as the oracle has it."""
    lens = [40, 700, 0, 300, 5, 260, 1]
    q, k, v = (randn(sum(lens), h, 64, dtype=dtype, seed=s) for h, s in ((8, 4), (2, 5), (2, 6)))
    cu = offsets(lens)
    out = poison_(torch.empty_like(q))
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        hetero.varlen_attention(q, k, v, cu, cu, max(lens), max(lens), out=out, causal=True,
                                backend="cpu")
    finally:
        torch.set_num_threads(previous)
    ref, _ = varlen_reference(q, k, v, cu.tolist(), cu.tolist(), scale=1 / math.sqrt(64),
                              causal=True, window=(-1, -1), softcap=0.0)
    check_within(out, ref, _bound(ref, dtype, max(lens)))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mask", MASKS, ids=lambda m: "-".join(f"{k}{v}" for k, v in m.items()))
@pytest.mark.parametrize("shape", [
    # (keys per sequence, queries per sequence or None = decode, block size, Hq, Hkv)
    ([1, 17, 0, 33], None, 16, 8, 2),
    ([3000], None, 16, 8, 1),          # one sequence: its keys split across threads
    ([700, 5], None, 7, 4, 4),
    ([9, 64, 3], [4, 1, 3], 16, 4, 2),  # chunked prefill
    ([130], [70], 32, 2, 1),           # more query rows than one part
    ([5, 40], None, 16, 32, 8),        # Llama-3-8B's heads: all eight in one item
    ([21], [2], 8, 64, 8),             # 16 rows per head: the heads in two items
    ([40, 100], [8, 13], 16, 8, 2),    # 32 and 52 rows per head: AMX tiles in the amx set
], ids=["decode", "split", "prime-block", "chunked", "long-chunk", "many-heads", "head-split",
        "tile-rows"])
def test_paged_matches_the_oracle(isa, dtype, mask, shape):
    lens, counts, block_size, hq, hkv = shape
    k_cache, v_cache, table = paged_cache(lens, block_size, hkv, 64, 64, dtype=dtype, seed=4)
    kwargs = dict(mask)
    if counts is None:
        q = randn(len(lens), hq, 64, dtype=dtype, seed=5)
    else:
        q = randn(sum(counts), hq, 64, dtype=dtype, seed=5)
        kwargs.update(cu_seqlens_q=offsets(counts), max_seqlen_q=max(counts))
    seq_lens = torch.tensor(lens, dtype=torch.int32)
    out = poison_(torch.empty_like(q))
    hetero.paged_attention(q, k_cache, v_cache, table, seq_lens, out=out, backend="cpu", **kwargs)
    _, record = hetero.ops.spec("paged_attention").bind(q, k_cache, v_cache, table, seq_lens,
                                                        **kwargs)
    ref = paged_reference(record, torch.float64)
    check_within(out, ref, _bound(ref, dtype, max(lens)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("keys", [300, 1100], ids=["heads-split", "heads-and-keys-split"])
def test_one_sequence_decodes_on_two_threads(isa, dtype, keys):
    """A decode step of one sequence on two threads: its key/value heads split between
    them (and, over a long cache, its keys too): every head as the oracle has it."""
    k_cache, v_cache, table = paged_cache([keys], 16, 8, 64, 64, dtype=dtype, seed=9)
    q = randn(1, 32, 64, dtype=dtype, seed=10)
    seq_lens = torch.tensor([keys], dtype=torch.int32)
    out = poison_(torch.empty_like(q))
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        hetero.paged_attention(q, k_cache, v_cache, table, seq_lens, out=out, backend="cpu")
    finally:
        torch.set_num_threads(previous)
    _, record = hetero.ops.spec("paged_attention").bind(q, k_cache, v_cache, table, seq_lens)
    ref = paged_reference(record, torch.float64)
    check_within(out, ref, _bound(ref, dtype, keys))


def test_the_amx_path_runs_exactly_where_the_cpu_has_amx(isa):
    """bf16 paged attention runs on AMX tiles in the amx set, which exists exactly where
    this build, the CPU and the OS allow AMX (the cases above then test it), and never in
    a lower set."""
    from hetero import _C, fingerprint

    amx_usable = _C.amx_bf16_peak_gflops(1, 0.001) > 0  # build, CPUID and arch_prctl
    assert ("amx" in _C.cpu_isas().split(",")) == (amx_usable and "avx512_bf16" in fingerprint.cpu_flags())
    expected = isa == "amx"
    assert _C.cpu_amx_attention() == expected
    assert ("AMX" in hetero.registry.get("cpu").backend.details.get("paged attention", "")) == expected


def test_the_vector_paged_kernel_runs_in_the_avx512_set_only(isa):
    """The avx512 set's paged kernel (kernels_avx512_paged.cpp) serves paged attention
    there and in the amx set (the cases above then test it); the lower sets keep the
    small-M products."""
    from hetero import _C

    assert _C.cpu_vector_paged_attention() == (isa in ("avx512", "amx"))


def test_paged_decode_agrees_with_attention_on_the_gathered_cache():
    """One decode step over a paged cache equals hetero.attention over the same keys laid
    out contiguously (bottom-right causal: the query is the last key)."""
    lens = [37, 64]
    k_cache, v_cache, table = paged_cache(lens, 16, 2, 32, 32, dtype=torch.float32, seed=7)
    q = randn(2, 4, 32, seed=8)
    got = hetero.paged_attention(q, k_cache, v_cache, table,
                                 torch.tensor(lens, dtype=torch.int32), backend="cpu")
    for b, n in enumerate(lens):
        blocks = table[b, :-(-n // 16)].long()
        k = k_cache[blocks].reshape(-1, 2, 32)[:n].transpose(0, 1)[None]
        v = v_cache[blocks].reshape(-1, 2, 32)[:n].transpose(0, 1)[None]
        # The query is the last key: it sees them all. The rule's baseline is PyTorch's
        # float32 attention over the same keys.
        query = q[b, :, None][None]
        exact = F.scaled_dot_product_attention(query.double(), k.double(), v.double(),
                                               enable_gqa=True)[0, :, 0]
        baseline = F.scaled_dot_product_attention(query, k, v, enable_gqa=True)[0, :, 0]
        check_within(got[b], exact, flash_rule_bound(exact, baseline))


def test_strided_views_and_non_contiguous_caches():
    """q/k/v as views into a fused projection output; caches as views into one tensor
    holding both, and a cache that is not contiguous along the head dim (copied)."""
    fused = randn(20, 8, 32, seed=9)
    q, k, v = fused[:, :4], fused[:, 4:6], fused[:, 6:]
    cq = offsets([9, 11])
    got = hetero.varlen_attention(q, k, v, cq, cq, 11, 11, causal=True, backend="cpu")
    ref, _ = varlen_reference(q, k, v, cq.tolist(), cq.tolist(), causal=True,
                              scale=1 / math.sqrt(32))
    check_within(got, ref, _bound(ref, torch.float32, 11))

    k_cache, v_cache, table = paged_cache([21, 5], 8, 2, 16, 16, dtype=torch.float32, seed=10,
                                          fused=True)
    odd = v_cache.transpose(-1, -2).contiguous().transpose(-1, -2)  # stride 16 along D
    q = randn(2, 2, 16, seed=11)
    lens = torch.tensor([21, 5], dtype=torch.int32)
    got = hetero.paged_attention(q, k_cache, odd, table, lens, backend="cpu")
    want = hetero.paged_attention(q, k_cache, v_cache, table, lens, backend="reference")
    check_within(got, want.double(), _bound(want.double(), torch.float32, 21))


def test_nan_reaches_only_its_row_and_unseen_rows_are_zero():
    q, k = randn(6, 2, 16, seed=12), randn(4, 2, 16, seed=13)
    q[3, 0, 0] = math.nan
    cu_q, cu_k = offsets([6]), offsets([4])
    out = hetero.varlen_attention(q, k, k, cu_q, cu_k, 6, 4, causal=True, backend="cpu")
    assert out[3, 0].isnan().all()
    assert out[3, 1].isfinite().all() and out[4:].isfinite().all()
    assert torch.equal(out[:2], torch.zeros_like(out[:2]))  # Sq > Sk: rows 0, 1 see no key
