"""The reference backend: it is the oracle, so it is checked against independent
formulations (PyTorch's SDPA in float64, explicit loops), not against itself."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import hetero
from hetero.ops.gemm.numerics import gemm_error_bound
from hetero.testing import check_within, flash_rule_bound, poison_, randn

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gemm_matches_float64(dtype):
    a, b = randn(2, 13, 29, dtype=dtype, seed=1), randn(29, 7, dtype=dtype, seed=2)
    bias = randn(13, 1, dtype=dtype, seed=3)
    out = poison_(torch.empty(2, 13, 7, dtype=dtype))
    hetero.gemm(a, b, bias=bias, alpha=1.5, beta=0.25, out=out, backend="reference")
    ref = hetero.reference_gemm(a, b, bias, 1.5, 0.25)
    check_within(out, ref, gemm_error_bound(a, b, bias, 1.5, 0.25, out_dtype=dtype))


def _loop_attention(q, k, v, causal, mask, scale):
    """Textbook attention, one query row at a time, in float64."""
    B, Hq, Sq, _ = q.shape
    Hkv, Sk = k.shape[1], k.shape[2]
    out = torch.zeros(B, Hq, Sq, v.shape[3], dtype=torch.float64)
    for bi in range(B):
        for h in range(Hq):
            kv = h // (Hq // Hkv)
            for i in range(Sq):
                s = (k[bi, kv].double() @ q[bi, h, i].double()) * scale
                allowed = torch.ones(Sk, dtype=torch.bool)
                if causal:
                    allowed &= torch.arange(Sk) <= i + Sk - Sq
                if mask is not None and mask.dtype == torch.bool:
                    allowed &= mask.expand(B, Hq, Sq, Sk)[bi, h, i]
                elif mask is not None:
                    s = s + mask.expand(B, Hq, Sq, Sk)[bi, h, i].double()
                if not allowed.any():
                    continue
                w = torch.softmax(s.masked_fill(~allowed, -math.inf), dim=0)
                out[bi, h, i] = w @ v[bi, kv].double()
    return out


CASES = [  # (B, Hq, Hkv, Sq, Sk, D, Dv, causal, mask)
    (1, 2, 2, 5, 5, 8, 8, False, None),
    (2, 4, 2, 3, 7, 16, 16, True, None),     # GQA, causal with Sq < Sk (decoding)
    (1, 3, 1, 7, 3, 12, 5, True, None),      # MQA, Sq > Sk: first rows see nothing
    (1, 2, 2, 6, 6, 80, 80, False, "bool"),
    (2, 2, 1, 4, 9, 24, 24, True, "additive"),
]


@pytest.mark.parametrize("B, Hq, Hkv, Sq, Sk, D, Dv, causal, mask", CASES)
def test_attention_matches_textbook_loops(B, Hq, Hkv, Sq, Sk, D, Dv, causal, mask):
    q = randn(B, Hq, Sq, D, seed=1)
    k, v = randn(B, Hkv, Sk, D, seed=2), randn(B, Hkv, Sk, Dv, seed=3)
    attn_mask = None
    if mask == "bool":
        attn_mask = torch.rand(Sq, Sk, generator=torch.Generator().manual_seed(4)) > 0.3
        attn_mask[1] = False  # a fully masked row
    elif mask == "additive":
        attn_mask = randn(B, 1, Sq, Sk, seed=5)
    out = poison_(torch.empty(B, Hq, Sq, Dv))
    hetero.attention(q, k, v, causal=causal, attn_mask=attn_mask, out=out, backend="reference")
    expected = _loop_attention(q, k, v, causal, attn_mask, 1 / math.sqrt(D))
    check_within(out, expected, 1e-5)
    if causal and Sq > Sk:
        assert torch.equal(out[:, :, : Sq - Sk], torch.zeros_like(out[:, :, : Sq - Sk]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32], ids=str)
def test_attention_low_precision_meets_the_flash_rule(dtype):
    q, k, v = (randn(2, 4, 33, 64, dtype=dtype, seed=s) for s in (1, 2, 3))
    out = hetero.attention(q, k, v, causal=True, scale=0.3, backend="reference")
    ref = hetero.reference_attention(q, k, v, causal=True, scale=0.3)
    baseline = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3)
    check_within(out, ref, flash_rule_bound(ref, baseline))
    # and the oracle agrees with PyTorch's SDPA run in float64
    sdpa64 = F.scaled_dot_product_attention(q.double(), k.double(), v.double(),
                                            is_causal=True, scale=0.3)
    check_within(ref, sdpa64, 1e-12)


def test_attention_nan_propagates_and_masked_rows_are_zero():
    q, k, v = (randn(1, 1, 4, 8, seed=s) for s in (1, 2, 3))
    mask = torch.ones(4, 4, dtype=torch.bool)
    mask[0] = False
    q[0, 0, 2, 0] = float("nan")
    out = hetero.attention(q, k, v, attn_mask=mask, backend="reference")
    assert torch.equal(out[0, 0, 0], torch.zeros(8))
    assert torch.isnan(out[0, 0, 2]).all() and not torch.isnan(out[0, 0, [1, 3]]).any()
