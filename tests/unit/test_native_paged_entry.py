"""hetero.paged_attention's decode step and hetero.write_kv_cache served natively
(hetero.native_entries.paged_attention_entry, write_kv_cache_entry;
csrc/route/paged_route.cpp): results bitwise against the Python path's cpu kernel and
within bound of float64 on ragged lengths, block sizes, masks and views; that the entry
(not the Python path) serves them, what it leaves to the Python path, cached decisions
that bad data never pins, and that bad input still raises hetero's named errors."""

from __future__ import annotations

import pytest
import torch

import hetero
from hetero import dispatch, native_route
from hetero.ops.paged_attention import api, kv_cache
from hetero.ops.paged_attention.conformance import paged_cache
from hetero.testing import check_against_oracle

pytestmark = pytest.mark.skipif(native_route.unavailable() is not None,
                                reason=f"native route: {native_route.unavailable()}")
route = hetero._C.route if native_route.unavailable() is None else None
DTYPES = [pytest.param(d, id=str(d).removeprefix("torch."))
          for d in (torch.float32, torch.bfloat16, torch.float16)]


@pytest.fixture
def python_path_calls(python_path_calls_of):
    """The calls that reached hetero.paged_attention's Python path."""
    return python_path_calls_of(api)


def _decode(lens, bs=16, hq=8, hkv=2, d=64, dv=None, dtype=torch.float32, seed=0):
    k_cache, v_cache, table = paged_cache(lens, bs, hkv, d, dv or d, dtype=dtype, seed=seed)
    q = torch.randn(len(lens), hq, d, generator=torch.Generator().manual_seed(seed + 7)).to(dtype)
    return q, k_cache, v_cache, table, torch.tensor(lens, dtype=torch.int32)


LENGTHS = [[1], [0, 1, 37, 200], [13, 0, 0, 7], [5] * 9 + [1031]]
MASKS = [{}, {"causal": False}, {"window": (7, -1)}, {"window": (3, 2), "causal": False},
         {"softcap": 30.0}, {"scale": 0.3}]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lens", LENGTHS, ids=["one", "ragged", "empty-rows", "one-long"])
@pytest.mark.parametrize("mask", MASKS, ids=["causal", "noncausal", "window", "window-both",
                                             "softcap", "scale"])
def test_the_decode_step_is_served_natively(mask, lens, dtype, python_path_calls):
    call = _decode(lens, dtype=dtype, seed=len(lens))
    with hetero.use("cpu"):
        out = hetero.paged_attention(*call, **mask)
    assert python_path_calls == []
    assert out.shape == (len(lens), 8, 64) and out.dtype == dtype and out.is_contiguous()
    # the same kernel through the Python path, into a poisoned out, checked against float64
    want = check_against_oracle("paged_attention", *call, backend="cpu", **mask)
    assert torch.equal(out, want)


@pytest.mark.parametrize("bs,hq,hkv,d,dv", [(1, 4, 4, 32, 32), (5, 6, 3, 40, 24),
                                            (16, 32, 8, 128, 128), (7, 1, 1, 96, 96)],
                         ids=["block-1-mha", "block-5-odd-dims", "llama", "mqa"])
def test_block_sizes_and_head_shapes(bs, hq, hkv, d, dv, python_path_calls):
    call = _decode([0, 1, 17, 100], bs, hq, hkv, d, dv, torch.bfloat16, seed=bs)
    out = hetero.paged_attention(*call)
    assert python_path_calls == []
    assert torch.equal(out, check_against_oracle("paged_attention", *call, backend="cpu"))


def test_strided_views_are_read_where_they_lie(python_path_calls):
    q, k_cache, v_cache, table, lens = _decode([9, 40, 3], hq=4, hkv=2, seed=3)
    q_view = torch.randn(4, 3, 64).transpose(0, 1)  # (3, 4, 64), heads strided
    wide = torch.full((table.shape[0], 2 * table.shape[1]), -1, dtype=torch.int32)
    wide[:, ::2] = table  # a strided block table
    lens_view = torch.stack([lens, lens], 1)[:, 0]
    out = hetero.paged_attention(q_view, k_cache, v_cache, wide[:, ::2], lens_view)
    assert python_path_calls == []
    assert torch.equal(out, hetero.paged_attention(q_view.contiguous(), k_cache, v_cache,
                                                   table, lens, backend="cpu"))


def test_caches_strided_along_the_head_dim_take_the_python_path(python_path_calls):
    q, k_cache, v_cache, table, lens = _decode([9, 40], seed=4)
    k_strided = torch.stack([k_cache, k_cache], -1)[..., 0]  # head dim stride 2
    out = hetero.paged_attention(q, k_strided, v_cache, table, lens)
    assert len(python_path_calls) == 1  # declined natively; the cpu kernel copies them
    assert torch.equal(out, hetero.paged_attention(q, k_cache, v_cache, table, lens,
                                                   backend="cpu"))


def test_the_decision_is_dispatchs_and_cached_natively(python_path_calls):
    call = _decode([3, 30], dtype=torch.float16, seed=5)
    with hetero.use("reference"):  # a kernel written in Python: the Python path
        hetero.paged_attention(*call)
    assert len(python_path_calls) == 1
    with hetero.use("cpu"):
        before = route.decisions()
        hetero.paged_attention(*call)
        hetero.paged_attention(*call, window=(4, -1))  # another mask feature: another key
        hetero.paged_attention(*call)
        assert route.decisions() == before + 2 and len(python_path_calls) == 1
    dispatch.clear_cache()
    assert route.decisions() == 0


@pytest.mark.parametrize("kwargs", [
    {"cu_seqlens_q": torch.tensor([0, 1, 2], dtype=torch.int32)}, {"max_seqlen_q": 1},
    {"out": torch.empty(2, 8, 64)}, {"backend": "cpu"}, {"scale": 1}, {"window": [-1, -1]},
    {"softcap": 0},
], ids=["cu_seqlens_q", "max_seqlen_q", "out", "backend", "int-scale", "list-window",
        "int-softcap"])
def test_other_calls_take_the_python_path(kwargs, python_path_calls):
    call = _decode([3, 30], seed=6)
    out = hetero.paged_attention(*call, **kwargs)
    assert len(python_path_calls) == 1
    plain = {key: (float(value) if key in ("scale", "softcap") else tuple(value)
                   if key == "window" else value) for key, value in kwargs.items()
             if key not in ("cu_seqlens_q", "max_seqlen_q", "out", "backend")}
    assert torch.equal(out, hetero.paged_attention(*call, **plain))


def test_a_query_that_requires_grad_is_refused_as_before(python_path_calls):
    q, *rest = _decode([3, 30], seed=7)
    with pytest.raises(RuntimeError, match="autograd"):
        hetero.paged_attention(q.requires_grad_(), *rest)
    assert len(python_path_calls) == 1


def _bad(which):
    q, k_cache, v_cache, table, lens = _decode([20, 5], seed=8)
    if which == "block id":
        table[0, 1] = k_cache.shape[0]
    elif which == "negative block id":
        table[1, 0] = -1
    elif which == "length":
        lens[1] = table.shape[1] * 16 + 1
    elif which == "negative length":
        lens[0] = -1
    elif which == "dtype":
        k_cache = k_cache.double()
    elif which == "table dtype":
        table = table.long()
    elif which == "lens shape":
        lens = lens[:1]
    elif which == "heads":
        k_cache = k_cache[:, :, :1].expand(-1, -1, 3, -1)
    elif which == "q":
        q = q.tolist()
    return q, k_cache, v_cache, table, lens


@pytest.mark.parametrize("which,kwargs,error,match", [
    ("block id", {}, ValueError, "block_table: block id"),
    ("negative block id", {}, ValueError, "block_table: block id -1"),
    ("length", {}, ValueError, "seq_lens: sequence 1"),
    ("negative length", {}, ValueError, "seq_lens: sequence 0"),
    ("dtype", {}, TypeError, "k_cache"),
    ("table dtype", {}, TypeError, "block_table"),
    ("lens shape", {}, ValueError, "seq_lens"),
    ("heads", {}, ValueError, "k_cache"),
    ("q", {}, TypeError, "q"),
    (None, {"window": (-2, -1)}, ValueError, "window"),
    (None, {"window": (True, -1)}, TypeError, "window"),
    (None, {"softcap": -1.0}, ValueError, "softcap"),
    (None, {"softcap": float("inf")}, ValueError, "softcap"),
    (None, {"causal": 1}, TypeError, "causal"),
])
def test_bad_input_raises_the_named_errors(which, kwargs, error, match, python_path_calls):
    with pytest.raises(error, match=match):
        hetero.paged_attention(*_bad(which), **kwargs)
    good = _decode([20, 5], seed=8)
    hetero.paged_attention(*good)  # bad data pinned no decision on the Python path
    assert len(python_path_calls) == 1


# ---------------------------------------------------------------- write_kv_cache
def _write_case(dtype, seed, strided=False):
    k_cache, v_cache, _ = paged_cache([40, 9], 5, 2, 32, 24, dtype=dtype, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    k = torch.randn(4, 2, 32, generator=gen).to(dtype)
    v = torch.randn(4, 2, 24, generator=gen).to(dtype)
    if strided:
        k = torch.randn(2, 4, 32, generator=gen).to(dtype).transpose(0, 1)
        v = torch.randn(4, 24, 2, generator=gen).to(dtype).transpose(1, 2)
    slots = torch.tensor([7, -1, 0, k_cache.shape[0] * 5 - 1], dtype=torch.int64)
    return k, v, k_cache, v_cache, slots


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("strided", [False, True], ids=["packed", "strided"])
def test_write_kv_cache_is_done_natively(strided, dtype):
    k, v, k_cache, v_cache, slots = _write_case(dtype, seed=1, strided=strided)
    want_k, want_v = k_cache.clone(), v_cache.clone()
    keep = slots >= 0
    want_k.view(-1, 2, 32)[slots[keep]] = k[keep]
    want_v.view(-1, 2, 24)[slots[keep]] = v[keep]
    versions = k_cache._version, v_cache._version
    assert kv_cache.native_write_kv_cache(k, v, k_cache, v_cache, slots) is True
    assert torch.equal(k_cache, want_k) and torch.equal(v_cache, want_v)
    hetero.write_kv_cache(k, v, k_cache, v_cache, slots)  # the public function, once more
    assert torch.equal(k_cache, want_k) and k_cache._version > versions[0]
    assert v_cache._version > versions[1]


def test_write_kv_cache_into_strided_caches():
    k, v, k_cache, v_cache, slots = _write_case(torch.float32, seed=2)
    fused = torch.zeros(k_cache.shape[0], 5, 2, 2, 32)
    k_view = fused[:, :, 0]  # k of a fused (blocks, block_size, 2, Hkv, D) cache
    want = k_view.clone()
    want.view(-1, 2, 32)[slots[slots >= 0]] = k[slots >= 0]
    hetero.write_kv_cache(k, k.clone(), k_view, fused[:, :, 1], slots)
    assert torch.equal(k_view, want)


@pytest.mark.parametrize("change,error,match", [
    (lambda c: c.update(slots=torch.tensor([3, 3, -1, 4])), ValueError, "twice"),
    (lambda c: c.update(slots=torch.tensor([3, -2, 1, 4])), ValueError, "slot_mapping"),
    (lambda c: c.update(slots=torch.tensor([3, 1000, 1, 4])), ValueError, "beyond"),
    (lambda c: c.update(slots=torch.tensor([3, 2, 1, 4], dtype=torch.int32)), TypeError,
     "slot_mapping"),
    (lambda c: c.update(k=c["k"].double()), TypeError, "k_cache"),
    (lambda c: c.update(v=c["v"][:, :1]), ValueError, "v:"),
    (lambda c: c.update(k_cache=c["k_cache"].requires_grad_()), ValueError, "requires grad"),
], ids=["twice", "below -1", "beyond", "int32 slots", "dtype", "v shape", "grad cache"])
def test_write_kv_cache_bad_input_raises_before_writing(change, error, match):
    k, v, k_cache, v_cache, slots = _write_case(torch.float32, seed=3)
    case = {"k": k, "v": v, "k_cache": k_cache, "v_cache": v_cache, "slots": slots}
    change(case)
    before = case["k_cache"].detach().clone()
    with pytest.raises(error, match=match):
        hetero.write_kv_cache(case["k"], case["v"], case["k_cache"], case["v_cache"],
                              case["slots"])
    assert torch.equal(case["k_cache"].detach(), before)
