"""The ``torch`` backend: PyTorch's own kernels behind hetero's semantics (bottom-right
causal, zeros for rows that see no key, NaN query rows kept), in every default order
after the native backends."""

from __future__ import annotations

import math

import pytest
import torch

import hetero
from hetero import dispatch
from hetero.ops.attention.checks import attention_inputs
from hetero.ops.attention.numerics import attention_error_bound
from hetero.testing import check_within, randn


def test_joins_every_default_order_after_the_native_backends():
    assert dispatch.default_order("cpu") == ["cpu", "torch", "reference"]
    assert dispatch.default_order("cuda")[-2:] == ["torch", "reference"]
    assert not hetero.registry.get("torch").reasons_unavailable()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gemm_with_bias_scaling_and_batch(dtype):
    a, b, bias = randn(2, 5, 7, dtype=dtype, seed=1), randn(7, 3, dtype=dtype, seed=2), \
        randn(3, dtype=dtype, seed=3)
    out = hetero.gemm(a, b, bias=bias, alpha=0.5, beta=-2.0, backend="torch")
    exact = hetero.reference_gemm(a, b, bias, 0.5, -2.0)
    baseline = hetero.reference_gemm(a, b, bias, 0.5, -2.0, compute_dtype=dtype).to(dtype)
    check_within(out, exact, 2 * (baseline.double() - exact).abs().max().item() + 1e-5)


@pytest.mark.parametrize("Sq,Sk", [(3, 9), (9, 3)])
def test_attention_keeps_hetero_semantics(Sq, Sk):
    q, k, v = attention_inputs(1, 4, 2, Sq, Sk, 16, 16, seed=4)
    mask = torch.rand(Sq, Sk, generator=torch.Generator().manual_seed(5)) > 0.4
    mask[0], mask[-1, 0] = False, True  # a row that sees no key, one that sees some
    q[0, 1, -1, 0] = math.nan  # a query row that must come out NaN
    out = hetero.attention(q, k, v, causal=True, attn_mask=mask, backend="torch")
    exact = hetero.reference_attention(q, k, v, causal=True, attn_mask=mask)
    assert torch.equal(out[:, :, 0], torch.zeros_like(out[:, :, 0]))
    assert out[0, 1, -1].isnan().all() and not out[0, 0, -1].isnan().any()
    seen = exact.isfinite()
    baseline = hetero.reference_attention(q, k, v, causal=True, attn_mask=mask,
                                          compute_dtype=torch.float32)
    check_within(out, exact, attention_error_bound(exact[seen], baseline[seen], 16, Sk))


def test_named_by_backend_and_float32_out_of_16_bit_inputs_refused():
    a, b = randn(4, 5, dtype=torch.bfloat16), randn(5, 3, dtype=torch.bfloat16)
    with pytest.raises(hetero.DispatchError, match="feature float32_out not supported"):
        hetero.gemm(a, b, out=torch.empty(4, 3), backend="torch")
