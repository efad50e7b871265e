"""The triton backend through the public ops: discovery, declared support, dispatch.
Kernel numerics are covered in tests/kernels/test_triton_*.py."""

from __future__ import annotations

import pytest
import torch

import hetero
from hetero import dispatch
from hetero.kernels.triton import interpreting
from hetero.ops.attention import head_dims
from hetero.ops.gemm.numerics import gemm_error_bound
from hetero.testing import check_within, flash_rule_bound, randn

pytest.importorskip("triton")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def test_triton_is_available_and_declares_its_support():
    entry = hetero.registry.get("triton")
    assert entry.reasons_unavailable() == []
    assert entry.backend.device_type == DEVICE
    support = {k.op: k.support for ks in entry.kernels.values() for k in ks}
    assert support["attention"].limits == head_dims(16, 256)
    assert {"causal", "gqa", "mask_bool", "mask_additive"} <= support["attention"].features


def test_default_order_uses_triton_only_on_gpus():
    if interpreting():
        assert "triton" not in dispatch.default_order("cpu")
    else:
        assert dispatch.default_order("cuda")[0] in ("triton", "cuda")
        assert "triton" in dispatch.default_order("cuda")


def test_gemm_and_attention_run_through_the_public_ops():
    a, b = randn(9, 20, device=DEVICE, seed=1), randn(20, 7, device=DEVICE, seed=2)
    out = hetero.gemm(a, b, backend="triton")
    check_within(out, hetero.reference_gemm(a, b), gemm_error_bound(a, b, out_dtype=out.dtype))
    q, k, v = (randn(1, 2, 5, 16, device=DEVICE, seed=s) for s in (3, 4, 5))
    out = hetero.attention(q, k, v, causal=True, backend="triton")
    ref = hetero.reference_attention(q, k, v, causal=True)
    base = hetero.reference_attention(q, k, v, causal=True, compute_dtype=torch.float32)
    check_within(out, ref, flash_rule_bound(ref, base))


@pytest.mark.skipif(not interpreting(), reason="interpreter only")
def test_interpreter_refuses_bfloat16_with_the_reason():
    a = randn(4, 4, dtype=torch.bfloat16)
    with pytest.raises(hetero.DispatchError, match="interpreter computes tl.dot wrongly"):
        hetero.gemm(a, a, backend="triton")


def test_head_dim_outside_declared_range_is_refused_with_a_reason():
    q = randn(1, 1, 4, 8, device=DEVICE)
    decision = hetero.explain("attention", q, q, q, backend="triton")
    assert decision.chosen is None
    assert "head dim 8 outside [16, 256]" in str(decision)
