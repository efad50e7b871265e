"""The cpu backend's flash attention (backends/cpu/attention_*.cpp), forward and
backward, against the float64 oracle: FlashAttention's error rule against PyTorch in
the input dtype, outputs poisoned first, awkward shapes (1, primes, Sq != Sk, head dims
from 1 to 256), GQA/MQA, masks, strided views, every kernel set and thread count (on
``avx512`` with AVX512_BF16, bf16 takes the pair-dot products: odd key counts per
sliver, head dims that are no multiple of its 32-wide slivers).
Calls with at most 8 queries per head take the decode path (attention_decode.cpp);
DECODE_SHAPES and the tests after them cover it."""

from __future__ import annotations

import math

import pytest
import torch

import hetero
from hetero import _C
from hetero.backends import cpu
from hetero.ops.attention.checks import (attention_inputs, check_attention_backward,
    check_attention_forward, run_attention_forward)
from hetero.testing import check_within, flash_rule_bound, poison_, randn

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.fixture(params=[1, 3])
def threads(request, hetero_env):
    hetero_env(HETERO_NUM_THREADS=str(request.param))
    return request.param


def check_forward(*args, **kw):
    return check_attention_forward(cpu.attention_forward, *args, **kw)


def backward_recomputing_scores(dout, q, k, v, out, lse, mask, causal, scale):
    """``cpu.attention_backward`` with no memory to keep score gradients in: its dQ sweep
    recomputes them (as it does for calls too large to keep them)."""
    dq, dk, dv = (poison_(torch.empty_like(t)) for t in (q, k, v))
    view = cpu.view
    _C.attention_backward(view(dout), view(q), view(k), view(v), view(out), view(lse),
                          None if mask is None else view(mask), causal, scale, view(dq),
                          view(dk), view(dv), cpu.num_threads(), score_memory_bytes=0)
    return dq, dk, dv


@pytest.fixture(params=["scores kept", "scores recomputed"])
def backward(request):
    return {"scores kept": cpu.attention_backward,
            "scores recomputed": backward_recomputing_scores}[request.param]


def check_backward(*args, backward=cpu.attention_backward, **kw):
    return check_attention_backward(cpu.attention_forward, backward, *args, **kw)


SHAPES = [  # B, Hq, Hkv, Sq, Sk, D, Dv, causal
    (1, 1, 1, 1, 1, 1, 1, False),
    (1, 2, 2, 17, 17, 16, 16, True),
    (2, 2, 2, 5, 131, 64, 64, True),    # Sq < Sk: bottom-right causal; crosses key blocks
    (1, 2, 2, 131, 37, 24, 24, True),   # Sq > Sk: first rows see nothing
    (1, 4, 2, 101, 263, 80, 80, True),  # GQA, several query and key blocks
    (2, 4, 1, 33, 5, 96, 40, False),    # MQA, Dv != D
    (1, 1, 1, 7, 13, 112, 160, False),
    (1, 2, 1, 9, 20, 192, 192, True),
    (1, 1, 1, 3, 300, 256, 256, False),
    (1, 2, 2, 100, 101, 64, 64, True),  # odd causal offset: slivers end on an odd key
    (1, 1, 1, 50, 97, 33, 72, True),    # odd D, Dv not a multiple of any sliver width
    (1, 2, 1, 37, 1031, 64, 48, False),  # three key blocks of 512: the online rescale of O
    (1, 1, 1, 99, 1100, 32, 32, True),   # causal rows ending in the third key block
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(map(str, s)))
def test_forward(isa, threads, shape, dtype):
    B, Hq, Hkv, Sq, Sk, D, Dv, causal = shape
    check_forward(*attention_inputs(B, Hq, Hkv, Sq, Sk, D, Dv, dtype=dtype), causal=causal)


DECODE_SHAPES = [  # B, Hq, Hkv, Sq, Sk, D, Dv, causal; Sq <= 8
    (1, 8, 2, 1, 1031, 64, 64, True),     # decode with GQA; three key blocks of 512
    (2, 4, 1, 4, 600, 37, 21, True),      # D and Dv off the vector width
    (1, 2, 2, 8, 5, 13, 13, True),        # Sq > Sk: the first 3 queries see nothing
    (3, 6, 3, 2, 513, 128, 128, False),
    (1, 71, 1, 1, 600, 24, 24, True),     # MQA, 71 rows: split into parts of at most 48
    (1, 8, 4, 8, 70, 16, 16, False),      # 16 rows per key/value head
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", DECODE_SHAPES, ids=lambda s: "-".join(map(str, s)))
def test_forward_decode(isa, threads, shape, dtype):
    B, Hq, Hkv, Sq, Sk, D, Dv, causal = shape
    check_forward(*attention_inputs(B, Hq, Hkv, Sq, Sk, D, Dv, dtype=dtype), causal=causal)


@pytest.mark.parametrize("mask_kind", ["bool", "additive"])
def test_decode_masks(isa, mask_kind):
    q, k, v = attention_inputs(2, 4, 2, 3, 700, 16, 16, dtype=torch.bfloat16, seed=9)
    if mask_kind == "bool":
        mask = torch.rand(2, 1, 3, 700, generator=torch.Generator().manual_seed(2)) > 0.5
        mask[1, :, 2] = False  # a row that sees nothing
    else:
        mask = randn(2, 4, 3, 700, seed=10)
        mask[..., 600:] = -math.inf  # the whole second key block
    out, lse = check_forward(q, k, v, mask=mask.expand(2, 4, 3, 700), causal=True)
    if mask_kind == "bool":
        assert (out[1, :, 2] == 0).all() and lse[1, :, 2].isinf().all()


def test_decode_packed_kv_views_and_nan(isa):
    # k and v as views into one packed (B, Sk, 2, Hkv, D) tensor: rows contiguous in d
    # but far apart, as a fused kv projection leaves them.
    kv = randn(1, 530, 2, 2, 24, seed=11)
    k, v = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)
    q = randn(1, 6, 1, 24, seed=12)
    check_forward(q, k, v)
    k = k.clone()
    k[0, 1, 520, 3] = math.nan  # second key block of kv head 1: its 3 query heads
    out, _ = run_attention_forward(cpu.attention_forward, q, k, v)
    assert out[0, 3:].isnan().all() and not out[0, :3].isnan().any()


def test_decode_results_do_not_depend_on_thread_count(isa):
    # One key/value head of 71 query rows: split into 2, 2, 3 and 5 parts.
    q, k, v = attention_inputs(1, 71, 1, 2, 600, 24, 24, seed=14)
    outs = []
    for threads in (1, 2, 3, 5):
        out, lse = poison_(torch.empty(1, 71, 2, 24)), poison_(torch.empty(1, 71, 2))
        _C.attention_forward(cpu.view(q), cpu.view(k), cpu.view(v), None, True, 0.2,
                             cpu.view(out), cpu.view(lse), threads)
        outs.append((out, lse))
    assert all(torch.equal(o, outs[0][0]) and torch.equal(l, outs[0][1]) for o, l in outs)


@pytest.mark.parametrize("causal", [False, True])
def test_bool_mask_broadcast_with_fully_masked_row(isa, causal):
    q, k, v = attention_inputs(2, 2, 1, 17, 140, 16, 16, seed=3)
    mask = torch.rand(1, 1, 17, 140, generator=torch.Generator().manual_seed(0)) > 0.4
    mask[..., 3, :] = False
    out, lse = check_forward(q, k, v, mask=mask, causal=causal)  # mask strides (0, 0, 140, 1)
    assert (out[:, :, 3] == 0).all() and lse[:, :, 3].isinf().all()


@pytest.mark.parametrize("mask_dtype", [torch.float32, torch.bfloat16], ids=str)
def test_additive_mask_with_neg_inf(isa, mask_dtype):
    q, k, v = attention_inputs(1, 2, 2, 17, 33, 24, 16, dtype=torch.bfloat16, seed=5)
    mask = randn(1, 2, 17, 33, seed=6)
    mask[:, :, :, 7] = -math.inf
    check_forward(q, k, v, mask=mask.to(mask_dtype), causal=True)


def test_strided_inputs_and_output(isa):
    q = randn(1, 19, 2, 40, seed=1).transpose(1, 2)[..., ::2]   # (1, 2, 19, 20), strided
    k = randn(1, 2, 20, 23, seed=2).transpose(2, 3)             # (1, 2, 23, 20), dim stride 23
    v = randn(1, 2, 23, 32, seed=3)[..., 5:21]                  # offset view
    out = torch.empty(1, 19, 2, 16).transpose(1, 2)
    check_forward(q, k, v, causal=True, out=out)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_negative_scale_and_nan_propagation(isa, dtype):
    q, k, v = attention_inputs(1, 1, 1, 9, 30, 16, 16, dtype=dtype, seed=4)
    check_forward(q, k, v, scale=-0.3)
    q[0, 0, 2, 5] = math.nan
    out, _ = run_attention_forward(cpu.attention_forward, q, k, v)
    assert out[0, 0, 2].isnan().all() and not out[0, 0, :2].isnan().any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("causal", [False, True])
def test_scores_jumping_between_key_blocks(isa, dtype, causal):
    # The second of three 512-key blocks scores far above the first (its keys scaled
    # up: P against the first block's max would be 2^200 and more, past float32) and
    # the third far below: the running max moves by much more than the lazy rescale
    # lets P grow (P taken again against the new max, O rescaled), then not at all.
    q, k, v = attention_inputs(1, 2, 1, 40, 1300, 32, 32, dtype=dtype, seed=11)
    k[:, :, 512:1024] *= 60
    k[:, :, 1024:] *= 0.25
    check_forward(q, k, v, causal=causal)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_inf_in_a_value_no_row_sees_stays_out(isa, dtype):
    # Sk = Sq + 1: the causal diagonal gives each sliver of rows an odd key count, so
    # bf16 pairs end with a key no row of the sliver sees (key 25 for rows 0-23); AMX
    # tiles pad the keys of rows 0-31 (0-32) to 64, key 33 the first padded one. Its
    # inf must not reach them as 0 * inf.
    rows, key = (32, 33) if isa == "amx" and dtype == torch.bfloat16 else (24, 25)
    q, k, v = attention_inputs(1, 1, 1, 100, 101, 64, 64, dtype=dtype, seed=7)
    v[0, 0, key] = math.inf
    out, _ = run_attention_forward(cpu.attention_forward, q, k, v, causal=True)
    clean = v.clone()
    clean[0, 0, key] = 0
    want, _ = run_attention_forward(cpu.attention_forward, q, k, clean, causal=True)
    assert torch.equal(out[0, 0, :rows], want[0, 0, :rows])


@pytest.mark.parametrize("sizes", [(0, 1, 1, 4, 4), (1, 1, 1, 0, 4), (1, 1, 1, 4, 0)])
def test_empty(sizes):
    B, Hq, Hkv, Sq, Sk = sizes
    q, k, v = attention_inputs(B, Hq, Hkv, Sq, Sk, 8, 8)
    out, lse = run_attention_forward(cpu.attention_forward, q, k, v)
    assert (out == 0).all() and lse.isinf().all()


def test_dispatch_serves_attention_with_the_cpu_kernel():
    q, k, v = attention_inputs(1, 4, 2, 33, 40, 64, 64, dtype=torch.bfloat16)
    assert hetero.explain("attention", q, k, v, causal=True).chosen.backend == "cpu"
    out = hetero.attention(q, k, v, causal=True)
    ref = hetero.reference_attention(q, k, v, causal=True)
    base = hetero.reference_attention(q, k, v, causal=True, compute_dtype=torch.bfloat16)
    check_within(out, ref, flash_rule_bound(ref, base))


def test_bad_views_are_refused_naming_the_argument():
    q, k, v = attention_inputs(1, 2, 2, 4, 4, 8, 8)
    out, lse = torch.empty(1, 2, 4, 8), torch.empty(1, 2, 4)
    view = cpu.view
    with pytest.raises(ValueError, match=r"^v: expected sizes \(1, 2, 4\), got \(1, 2, 3, 8\)"):
        _C.attention_forward(view(q), view(k), view(v[:, :, :3]), None, False, 1.0, view(out))
    with pytest.raises(ValueError, match="^k: expected a head count dividing q's 2, got 3"):
        k3 = torch.zeros(1, 3, 4, 8)
        _C.attention_forward(view(q), view(k3), view(k3), None, False, 1.0, view(out))
    with pytest.raises(TypeError, match="^lse: expected dtype float32"):
        _C.attention_forward(view(q), view(k), view(v), None, False, 1.0, view(out),
                             view(lse.double()))
    with pytest.raises(TypeError, match="^mask: expected dtype bool, float32 or float32"):
        _C.attention_forward(view(q), view(k), view(v), view(torch.zeros(1, 2, 4, 4).double()),
                             False, 1.0, view(out))


# ------------------------------------------------------------------ backward

BWD_SHAPES = [  # B, Hq, Hkv, Sq, Sk, D, Dv, causal
    (1, 1, 1, 1, 1, 1, 1, False),
    (1, 4, 2, 17, 133, 16, 16, True),   # GQA, Sq < Sk, two key blocks
    (1, 2, 1, 131, 17, 24, 40, True),   # MQA, Sq > Sk: blind rows; Dv != D
    (2, 2, 2, 70, 70, 80, 80, False),
    (1, 1, 1, 5, 9, 256, 256, True),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", BWD_SHAPES, ids=lambda s: "-".join(map(str, s)))
def test_backward(isa, threads, shape, dtype, backward):
    B, Hq, Hkv, Sq, Sk, D, Dv, causal = shape
    check_backward(*attention_inputs(B, Hq, Hkv, Sq, Sk, D, Dv, dtype=dtype), causal=causal,
                   backward=backward)


def test_backward_bool_mask_fully_masked_row(isa, backward):
    q, k, v = attention_inputs(1, 2, 2, 17, 17, 16, 16, seed=7)
    mask = torch.rand(1, 1, 17, 17, generator=torch.Generator().manual_seed(1)) > 0.3
    mask[..., 4, :] = False
    dq, _, _ = check_backward(q, k, v, mask=mask, causal=True, backward=backward)
    assert (dq[:, :, 4] == 0).all()


def test_backward_additive_mask_strided_dout(isa, backward):
    q, k, v = attention_inputs(1, 2, 1, 17, 33, 16, 24, seed=8)
    mask = randn(1, 2, 17, 33, seed=12)
    mask[:, :, :, 7] = -math.inf
    dout = randn(1, 17, 2, 24, seed=13).transpose(1, 2)
    check_backward(q, k, v, mask=mask, dout=dout, backward=backward)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_backward_head_dim_strided_inputs(isa, backward, dtype):
    # gradients come out in their inputs' layouts: here a head dim of stride S, not 1
    q, k, v = (t.transpose(2, 3).contiguous().transpose(2, 3)
               for t in attention_inputs(1, 2, 1, 19, 70, 24, 16, dtype=dtype, seed=9))
    assert q.stride(3) != 1
    check_backward(q, k, v, causal=True, backward=backward)


def test_gradients_do_not_modify_inputs():
    q, k, v = attention_inputs(1, 2, 2, 9, 9, 8, 8)
    saved = [t.clone() for t in (q, k, v)]
    out = poison_(torch.empty(1, 2, 9, 8))
    lse = cpu.attention_forward(q, k, v, None, True, 0.5, out)
    cpu.attention_backward(torch.ones_like(out), q, k, v, out, lse, None, True, 0.5)
    assert all(torch.equal(a, b) for a, b in zip(saved, (q, k, v)))
