"""Simulated targets: their numerics differ from exact fp32 as the device model says,
they refuse with reasons what the target cannot do, and they never run uninvited."""

from __future__ import annotations

import math
import sys
import types

import pytest
import torch

import hetero
from hetero.backends import simulated
from hetero.backends.simulated import ASCEND, MLU, fp32_mode, numerics, round_mantissa
from hetero.ops.attention.numerics import attention_error_bound
from hetero.ops.gemm import GemmArgs
from hetero.ops.gemm.numerics import gemm_error_bound
from hetero.testing import check_within, randn, unit_roundoff


def test_round_mantissa_is_round_to_nearest_even():
    one = 1.0
    x = torch.tensor([one + 2**-11, one + 3 * 2**-11, one + 2**-12, -(one + 2**-10),
                      torch.finfo(torch.float32).max, math.inf, -math.inf, math.nan, 0.0,
                      1e-40])
    r = round_mantissa(x, 10)
    # ties go to even; the largest float32 rounds past itself, to inf
    assert r[:5].tolist() == [one, one + 2**-9, one, -(one + 2**-10), math.inf]
    assert r[5] == math.inf and r[6] == -math.inf and math.isnan(r[7]) and r[8] == 0
    values = randn(1000, seed=3)
    rounded = round_mantissa(values, 10)
    assert ((rounded - values).abs() <= values.abs() * 2**-11).all()  # half an ulp of 10 bits
    assert torch.equal(round_mantissa(rounded, 10), rounded)  # idempotent


def test_reduced_fp32_gemm_error_is_within_the_models_bound_and_above_exact():
    a, b = randn(40, 700, seed=1), randn(700, 24, seed=2)
    ref = a.double() @ b.double()
    with fp32_mode("reduced"):
        reduced = hetero.gemm(a, b, backend="ascend_sim")
    exact = hetero.gemm(a, b, backend="cpu")
    # the model: operands rounded to 10 mantissa bits (half-ulp 2^-11 each), then one
    # float32 rounding per 16-long k tile
    u_op, chunks = 2.0**-(ASCEND.fp32_mantissa_bits + 1), math.ceil(700 / ASCEND.tile[2])
    magnitude = a.double().abs() @ b.double().abs()
    bound = (2 * u_op + u_op**2 + (chunks + 2) * unit_roundoff(torch.float32)) * magnitude
    check_within(reduced, ref, bound)
    err_reduced = (reduced.double() - ref).abs().max().item()
    err_exact = (exact.double() - ref).abs().max().item()
    assert err_reduced > 50 * err_exact  # HF32 is visibly coarser than fp32
    with pytest.raises(AssertionError):  # and would fail an exact-fp32 check
        check_within(reduced, ref, gemm_error_bound(a, b, out_dtype=torch.float32))


def test_exact_mode_is_fp32_and_only_the_operand_rounding_changes():
    a, b = randn(33, 300, seed=4), randn(300, 17, seed=5)
    with fp32_mode("exact"):
        exact = hetero.gemm(a, b, backend="ascend_sim")
    check_within(exact, a.double() @ b.double(), gemm_error_bound(a, b, out_dtype=torch.float32))
    # operands that already fit 10 mantissa bits: both modes give the same bits
    a10, b10 = round_mantissa(a, 10), round_mantissa(b, 10)
    with fp32_mode("exact"):
        first = hetero.gemm(a10, b10, backend="ascend_sim")
    with fp32_mode("reduced"):
        second = hetero.gemm(a10, b10, backend="ascend_sim")
    assert torch.equal(first, second)
    # mlu_sim computes fp32 exactly by default; low precision ignores the mode
    check_within(hetero.gemm(a, b, backend="mlu_sim"), a.double() @ b.double(),
                 gemm_error_bound(a, b, out_dtype=torch.float32))
    ah, bh = a.half(), b.half()
    with fp32_mode("exact"):
        h1 = hetero.gemm(ah, bh, backend="ascend_sim")
    assert torch.equal(h1, hetero.gemm(ah, bh, backend="ascend_sim"))


def test_accumulation_is_tiled_as_the_model_says():
    """One float32 rounding per k tile: two 0.4-ulp terms in different 16-long tiles
    are each rounded away (ascend_sim), while in one 32-long tile (mlu_sim) they add up
    to 0.8 ulp and round up."""
    tiny = 0.4 * 2.0**-23
    a = torch.zeros(1, 32)
    a[0, 0], a[0, 1], a[0, 16] = 1.0, tiny, tiny
    b, out = torch.ones(32, 1), torch.empty(1, 1)
    numerics.gemm(ASCEND, GemmArgs(a, b, out))
    assert out.item() == 1.0
    numerics.gemm(MLU, GemmArgs(a, b, out))
    assert out.item() == 1.0 + 2.0**-23


@pytest.mark.parametrize("backend", ["ascend_sim", "mlu_sim"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_attention_meets_the_flash_rule(backend, dtype):
    hkv = 2 if backend == "ascend_sim" else 4
    q = randn(1, 4, 37, 64, dtype=dtype, seed=6)
    k, v = randn(1, hkv, 601, 64, dtype=dtype, seed=7), randn(1, hkv, 601, 64, dtype=dtype, seed=8)
    out = hetero.attention(q, k, v, causal=True, backend=backend)
    ref = hetero.reference_attention(q, k, v, causal=True)
    baseline = hetero.reference_attention(q, k, v, causal=True, compute_dtype=dtype)
    check_within(out, ref, attention_error_bound(ref, baseline, 64, 601))
    assert numerics.key_block(ASCEND if backend == "ascend_sim" else MLU, 64, dtype) < 601


def test_reduced_fp32_attention_is_coarser_than_exact():
    q, k, v = (randn(1, 2, 20, 32, seed=s) for s in (9, 10, 11))
    ref = hetero.reference_attention(q, k, v)
    with fp32_mode("reduced"):
        reduced = hetero.attention(q, k, v, backend="ascend_sim")
    with fp32_mode("exact"):
        exact = hetero.attention(q, k, v, backend="ascend_sim")
    err = [(o.double() - ref).abs().max().item() for o in (reduced, exact)]
    assert err[0] > 50 * err[1] and err[0] < 2.0**-9 and err[1] < 1e-5


def test_fully_masked_rows_are_zero_and_bool_masks_apply():
    q, k, v = (randn(1, 2, 5, 16, seed=s) for s in (12, 13, 14))
    mask = torch.ones(5, 5, dtype=torch.bool)
    mask[2] = False
    with fp32_mode("exact"):
        out = hetero.attention(q, k, v, attn_mask=mask, backend="ascend_sim")
    assert (out[:, :, 2] == 0).all()
    check_within(out, hetero.reference_attention(q, k, v, attn_mask=mask), 1e-5)


def _reasons(*args, **kwargs):
    decision = hetero.explain(*args, **kwargs)
    assert decision.chosen is None
    return "; ".join(r for c in decision.candidates for r in c.reasons)


def test_refusals_carry_reasons():
    q, k = randn(1, 4, 8, 64), randn(1, 2, 8, 64)
    assert "mask_additive not supported" in _reasons(
        "attention", q, k, k, attn_mask=torch.zeros(8, 8), backend="ascend_sim")
    assert "mask_bool not supported" in _reasons(
        "attention", q, q, q, attn_mask=torch.ones(8, 8, dtype=torch.bool), backend="mlu_sim")
    assert "gqa not supported" in _reasons("attention", q, k, k, backend="mlu_sim")
    q80 = randn(1, 4, 8, 80)
    assert "head dim 80 not a multiple of 64" in _reasons("attention", q80, q80, q80,
                                                          backend="mlu_sim")
    assert "dtype float64 not in" in _reasons("gemm", randn(2, 2).double(), randn(2, 2).double(),
                                              backend="ascend_sim")


def test_a_head_dim_that_does_not_fit_the_core_is_refused():
    tiny = simulated.SimulatedBackend(
        simulated.DeviceModel(**{**ASCEND.__dict__, "name": "tiny_sim", "memory_per_core": 8192}))
    hetero.register_backend(tiny)
    try:
        q = randn(1, 1, 4, 128)
        assert "one attention step's tiles exceed the 8 KiB per core" in _reasons(
            "attention", q, q, q, backend="tiny_sim")
        q = randn(1, 1, 4, 32)
        assert hetero.explain("attention", q, q, q, backend="tiny_sim").chosen is not None
    finally:
        hetero.unregister_backend("tiny_sim")


def test_never_the_default_for_cpu_tensors():
    a = randn(4, 4)
    assert "ascend_sim" not in hetero.dispatch.default_order("cpu")
    assert "mlu_sim" not in hetero.dispatch.default_order("cpu")
    assert hetero.explain("gemm", a, a).chosen.qualname == "cpu.gemm"
    assert hetero.explain("gemm", a, a, backend="ascend_sim").chosen.qualname == "ascend_sim.cube"


def test_probe_reports_the_real_device(monkeypatch):
    assert "torch_npu is not installed" in simulated.real_device(ASCEND)
    fake = types.ModuleType("torch_npu")
    monkeypatch.setitem(sys.modules, "torch_npu", fake)
    monkeypatch.setattr(torch, "npu", types.SimpleNamespace(is_available=lambda: True,
                                                            device_count=lambda: 8),
                        raising=False)
    assert "torch_npu with 8 npu device(s)" in simulated.real_device(ASCEND)
    monkeypatch.setattr(torch, "npu", types.SimpleNamespace(is_available=lambda: False,
                                                            device_count=lambda: 0))
    assert "no npu device is present" in simulated.real_device(ASCEND)


def test_hetero_info_shows_the_models_and_their_support():
    backends = {b["name"]: b for b in hetero.info()["backends"]}
    for name, masks in (("ascend_sim", ["mask_bool"]), ("mlu_sim", ["mask_additive"])):
        b = backends[name]
        assert b["available"] and b["default"] is False and b["api_version"] == "2.0"
        assert "tile (m, n, k)" in b["details"] and "real device" in b["details"]
        attention = next(k for k in b["kernels"] if k["op"] == "attention")
        assert [f for f in attention["support"]["features"] if f.startswith("mask")] == masks
