"""torch._scaled_mm and torch._int_mm under hetero.enabled(), on the native route and in the
function mode: routed to scaled_gemm and counted as served, matching plain PyTorch within the op's bound; what hetero does not
serve stays with PyTorch, counted with the reason; torch.compile keeps the op in its
graph."""

from __future__ import annotations

import pytest
import torch

import hetero
from hetero.ops.scaled_gemm import pytorch
from hetero.ops.scaled_gemm.api import prepare
from hetero.ops.scaled_gemm.conformance import quantized, scales
from hetero.ops.scaled_gemm.numerics import error_bound, reference
from hetero.testing import check_within

E4M3 = torch.float8_e4m3fn


@pytest.fixture(autouse=True)
def fresh_stats():
    hetero.reset_stats()
    yield
    hetero.reset_stats()


@pytest.fixture(params=[True, False], ids=["native route", "function mode"])
def native(request):
    from hetero import native_route

    if request.param and native_route.unavailable() is not None:
        pytest.skip(f"native route: {native_route.unavailable()}")
    return request.param


def _served_calls():
    return sum(c.calls for c in hetero.stats().served.get("scaled_gemm", {}).values())


@pytest.mark.parametrize("dtype", [E4M3, torch.float8_e5m2, torch.float8_e4m3fnuz], ids=str)
@pytest.mark.parametrize("recipe", ["tensor", "row"])
@pytest.mark.parametrize("out_dtype", [torch.bfloat16, torch.float32], ids=str)
def test_scaled_mm_is_served_and_matches_pytorch(dtype, recipe, out_dtype, native):
    m, n, k = 5, 33, 96
    a, b = quantized((m, k), dtype, 1), quantized((n, k), dtype, 2).t()
    sa, sb = scales(recipe, m, n, k, seed=3)
    bias = torch.randn(n).to(out_dtype) if out_dtype is torch.bfloat16 else None
    refused = pytorch.refusal("cpu", dtype, recipe)  # then hetero serves what PyTorch cannot
    plain = None if refused else torch._scaled_mm(a, b, sa, sb, bias=bias, out_dtype=out_dtype)
    with hetero.enabled(native=native):
        got = torch._scaled_mm(a, b, sa, sb, bias=bias, out_dtype=out_dtype)
    assert _served_calls() == 1 and not hetero.stats().fallbacks
    _, record = prepare(a, b, sa, sb, bias, out_dtype, None, None)
    exact = reference(record, torch.float64)
    bound = error_bound(record, exact)
    check_within(got, exact, bound)
    if plain is not None:
        check_within(plain, exact, 2 * bound + torch.finfo(out_dtype).eps * exact.abs())


def test_int_mm_is_served_exactly(native):
    a, b = quantized((17, 64), torch.int8, 1), quantized((64, 24), torch.int8, 2)
    plain = torch._int_mm(a, b)
    with hetero.enabled(native=native):
        got = torch._int_mm(a, b)
    assert got.dtype is torch.int32 and torch.equal(got, plain)
    assert _served_calls() == 1


def test_what_hetero_does_not_serve_stays_with_pytorch_counted(native):
    a, b = quantized((4, 32), E4M3, 1), quantized((8, 32), E4M3, 2).t()
    one = torch.ones(())
    with hetero.enabled(native=native):
        fp8_out = torch._scaled_mm(a, b, one, one)  # out_dtype left at float8
        mixed = torch._scaled_mm(a, b.to(torch.float8_e5m2), one, one, out_dtype=torch.bfloat16)
    assert fp8_out.dtype is E4M3 and mixed.dtype is torch.bfloat16
    reasons = set(hetero.stats().fallbacks.get("scaled_gemm", {}))
    assert any("out_dtype float8_e4m3fn is not served" in r for r in reasons), reasons
    assert any("mixed dtypes" in r for r in reasons), reasons
    assert _served_calls() == 0


def test_torch_compile_under_enabled_is_served(native):
    """Dynamo does not trace torch._scaled_mm through the routing mode; the compiled
    code calls it with an ``out=`` buffer, which hetero serves (and copies into)."""
    def layer(x, w, sx, sw):
        return torch._scaled_mm(x, w.t(), sx, sw, out_dtype=torch.bfloat16).float().relu()

    x, w = quantized((3, 64), E4M3, 1), quantized((16, 64), E4M3, 2)
    sx, sw = scales("row", 3, 16, 64, seed=1)
    expected = layer(x, w, sx, sw)
    torch._dynamo.reset()
    compiled = torch.compile(layer, fullgraph=True)  # a graph break would raise
    with hetero.enabled(native=native):
        got = compiled(x, w, sx, sw)
    assert _served_calls() == 1 and not hetero.stats().fallbacks
    torch.testing.assert_close(got, expected, atol=0.5, rtol=2**-7)


def test_opcheck():
    """The fake impl and autograd registration (opcheck's schema test compares float8
    tensors with arithmetic PyTorch's CPU build lacks, so it is left out)."""
    utils = ("test_faketensor", "test_aot_dispatch_dynamic")
    a, b = quantized((3, 64), E4M3, 1), quantized((64, 5), E4M3, 2)
    sa, sb = scales("row", 3, 5, 64, seed=2)
    torch.library.opcheck(torch.ops.hetero.scaled_gemm.default, (a, b, sa, sb, None, None),
                          test_utils=utils)
    i8a, i8b = quantized((3, 64), torch.int8, 1), quantized((64, 5), torch.int8, 2)
    torch.library.opcheck(torch.ops.hetero.scaled_gemm.default,
                          (i8a, i8b, None, None, None, torch.int32), test_utils=utils)
