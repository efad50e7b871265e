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


# scaled_gemm: the low-precision encodings each unit takes, as its model lists them

SERVED = [("ascend_sim", torch.int8), ("ascend_sim", torch.float8_e4m3fn),
          ("ascend_sim", torch.float8_e5m2), ("mlu_sim", torch.int8)]
# 1, primes, K around the 32-deep (ascend_sim) and 64-deep (mlu_sim) 8-bit tiles
SCALED_SHAPES = [(1, 1, 1), (3, 5, 31), (17, 13, 33), (7, 31, 65), (37, 19, 257)]


def _scaled_inputs(dtype, recipe, m, n, k, seed):
    from hetero.ops.scaled_gemm.conformance import quantized, scales
    a = quantized((m, k), dtype, seed)
    b = quantized((k, n), dtype, seed + 1, layout_t=True)  # w.t(), as torch._scaled_mm wants
    return (a, b, *scales(recipe, m, n, k, seed + 2))


@pytest.mark.parametrize("recipe", ["tensor", "row"])
@pytest.mark.parametrize("backend,dtype", SERVED)
def test_scaled_gemm_meets_the_ops_bound_on_awkward_shapes(backend, dtype, recipe):
    for i, (m, n, k) in enumerate(SCALED_SHAPES):
        a, b, sa, sb = _scaled_inputs(dtype, recipe, m, n, k, seed=20 + i)
        for out_dtype in (torch.bfloat16, torch.float16, torch.float32):
            # int8 sums reach 1e5, beyond float16's range
            small = sa / 64 if out_dtype is torch.float16 and dtype is torch.int8 else sa
            hetero.testing.check_against_oracle("scaled_gemm", a, b, small, sb,
                                                backend=backend, out_dtype=out_dtype)
        bias = randn(n, seed=i).to(torch.bfloat16)
        hetero.testing.check_against_oracle("scaled_gemm", a, b, sa, sb, bias=bias,
                                            backend=backend)


@pytest.mark.parametrize("backend", ["ascend_sim", "mlu_sim"])
def test_int8_without_scales_is_the_int32_accumulator_exactly(backend):
    for i, (m, n, k) in enumerate(SCALED_SHAPES):
        a, b, _, _ = _scaled_inputs(torch.int8, "tensor", m, n, k, seed=40 + i)
        out = hetero.testing.check_against_oracle("scaled_gemm", a, b, None, None,
                                                  out_dtype=torch.int32, backend=backend)
        assert torch.equal(out, (a.long() @ b.long()).int())


def test_fp8_accumulation_is_tiled_as_the_model_says():
    """ascend_sim adds fp8 products into float32 once per 32-deep k tile: two 3/8-ulp
    terms in different tiles are each rounded away, in one tile they round up."""
    from hetero.ops.scaled_gemm import ScaledGemmArgs
    e4m3, one = torch.float8_e4m3fn, torch.ones(1, 1)
    assert ASCEND.low_precision_for(e4m3).tile[2] == 32
    big, tiny = 448.0 * 448.0, 3 * 2.0**-9  # ulp(big) is 2^-6; tiny * 1 is 3/8 of it
    b = torch.ones(64, 1)
    b[0, 0] = 448.0
    for second, expected in ((32, big), (2, big + 2.0**-6)):
        a = torch.zeros(1, 64)
        a[0, 0], a[0, 1], a[0, second] = 448.0, tiny, tiny
        args = ScaledGemmArgs(a.to(e4m3), b.to(e4m3), one, one, torch.empty(1, 1))
        numerics.scaled_gemm(ASCEND, args)
        assert args.out.item() == expected


def test_the_int32_accumulator_wraps():
    from hetero.ops.scaled_gemm import ScaledGemmArgs
    k = 140_000  # 127 * 127 * k > 2^31
    a, b = torch.full((1, k), 127, dtype=torch.int8), torch.full((k, 1), 127, dtype=torch.int8)
    args = ScaledGemmArgs(a, b, torch.ones(1, 1), torch.ones(1, 1),
                          torch.empty(1, 1, dtype=torch.int32))
    numerics.scaled_gemm(MLU, args)
    assert args.out.item() == (127 * 127 * k + 2**31) % 2**32 - 2**31


def test_scaled_gemm_refusals_carry_reasons():
    a, b, sa, sb = _scaled_inputs(torch.float8_e4m3fn, "block", 5, 7, 128, seed=50)
    assert "feature block not supported" in _reasons("scaled_gemm", a, b, sa, sb,
                                                     backend="ascend_sim")
    assert "dtype float8_e4m3fn not in ['int8']" in _reasons("scaled_gemm", a, b, sa, sb,
                                                            backend="mlu_sim")
    for fnuz in (torch.float8_e4m3fnuz, torch.float8_e5m2fnuz):
        a, b, sa, sb = _scaled_inputs(fnuz, "row", 5, 7, 33, seed=51)
        assert (f"dtype {str(fnuz).removeprefix('torch.')} not in "
                f"['float8_e4m3fn', 'float8_e5m2', 'int8']") in _reasons(
            "scaled_gemm", a, b, sa, sb, backend="ascend_sim")
    a, b, sa, sb = _scaled_inputs(torch.int8, "block", 5, 7, 256, seed=52)
    assert "feature block not supported" in _reasons("scaled_gemm", a, b, sa, sb,
                                                     backend="mlu_sim")
    a, b, sa, sb = _scaled_inputs(torch.float8_e5m2, "row", 5, 7, 33, seed=53)
    assert hetero.explain("scaled_gemm", a, b, sa, sb,
                          backend="ascend_sim").chosen.qualname == "ascend_sim.cube"
    assert hetero.explain("scaled_gemm", a.view(torch.int8), b.view(torch.int8), sa, sb,
                          backend="mlu_sim").chosen.qualname == "mlu_sim.matmul"


def test_the_low_precision_data_drives_support_and_numerics():
    """A vendor's edit of the data: block scales on int8, tensor-wise only on fp8."""
    custom = simulated.DeviceModel(**{**ASCEND.__dict__, "name": "quant_sim", "low_precision": (
        simulated.LowPrecision(torch.int8, (16, 16, 64), torch.int32,
                               frozenset({"tensor", "row", "block"})),
        simulated.LowPrecision(torch.float8_e5m2, (16, 16, 32), torch.float32,
                               frozenset({"tensor"})))})
    hetero.register_backend(simulated.SimulatedBackend(custom))
    try:
        for i, (m, n, k) in enumerate([(1, 1, 128), (5, 7, 256), (13, 131, 384)]):
            a, b, sa, sb = _scaled_inputs(torch.int8, "block", m, n, k, seed=60 + i)
            hetero.testing.check_against_oracle("scaled_gemm", a, b, sa, sb,
                                                backend="quant_sim", out_dtype=torch.float32)
        a, b, sa, sb = _scaled_inputs(torch.float8_e5m2, "row", 5, 7, 33, seed=63)
        assert ("row-wise scales on float8_e5m2: the cube unit's dequantisation applies "
                "tensor-wise scales only") in _reasons("scaled_gemm", a, b, sa, sb,
                                                       backend="quant_sim")
        a, b, sa, sb = _scaled_inputs(torch.float8_e5m2, "tensor", 5, 7, 33, seed=64)
        hetero.testing.check_against_oracle("scaled_gemm", a, b, sa, sb, backend="quant_sim")
    finally:
        hetero.unregister_backend("quant_sim")


def test_hetero_info_shows_the_low_precision_inputs():
    backends = {b["name"]: b for b in hetero.info()["backends"]}
    assert backends["ascend_sim"]["details"]["scaled_gemm inputs"].startswith(
        "int8: 16×16×32 tiles, int32 accumulator, tensor/row-wise scales; float8_e4m3fn:")
    assert backends["mlu_sim"]["details"]["scaled_gemm inputs"] == \
        "int8: 32×32×64 tiles, int32 accumulator, tensor/row-wise scales"
    kernel = next(k for k in backends["mlu_sim"]["kernels"] if k["op"] == "scaled_gemm")
    assert kernel["support"]["dtypes"] == ["int8"]
    assert "block" not in kernel["support"]["features"]
