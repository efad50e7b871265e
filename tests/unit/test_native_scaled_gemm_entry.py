"""hetero.scaled_gemm's common case served natively
(hetero.native_entries.scaled_gemm_entry, csrc/route/scaled_route.cpp): results against float64 and bitwise against the Python
path's cpu kernel on awkward shapes, views and scale shapes, and int8 without scales
exactly (torch._int_mm's call); that the entry (not the Python path) serves them, what it
leaves to the Python path, cached decisions, and that bad input still raises hetero's
named errors."""

from __future__ import annotations

import pytest
import torch

import hetero
from hetero import dispatch, native_route
from hetero.ops.scaled_gemm import api
from hetero.ops.scaled_gemm.conformance import quantized, scales
from hetero.testing import check_against_oracle

pytestmark = pytest.mark.skipif(native_route.unavailable() is not None,
                                reason=f"native route: {native_route.unavailable()}")
route = hetero._C.route if native_route.unavailable() is None else None
DTYPES = [pytest.param(d, id=str(d).removeprefix("torch.")) for d in api.INPUT_DTYPES]


@pytest.fixture
def python_path_calls(python_path_calls_of):
    """The calls that reached hetero.scaled_gemm's Python path."""
    return python_path_calls_of(api)


def _operands(dtype, m, n, k, seed, layout="w.t()"):
    a = quantized((m, k), dtype, seed, layout_t=layout == "a.t()")
    b = quantized((k, n), dtype, seed + 1, layout_t=layout == "w.t()")
    return a, b


SIZES = [(1, 1, 1), (1, 37, 200), (3, 300, 256), (17, 13, 11), (0, 5, 3), (4, 0, 3), (4, 5, 0)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("recipe", ["tensor", "row"])
@pytest.mark.parametrize("layout", ["w.t()", "row-major b", "a.t()"])
@pytest.mark.parametrize("m,n,k", SIZES)
def test_the_common_case_is_served_natively(m, n, k, layout, recipe, dtype, python_path_calls):
    a, b = _operands(dtype, m, n, k, seed=m + n + k, layout=layout)
    scale_a, scale_b = scales(recipe, m, n, k, seed=3)
    with hetero.use("cpu"):
        out = hetero.scaled_gemm(a, b, scale_a, scale_b)
    assert python_path_calls == []
    assert out.shape == (m, n) and out.dtype == torch.bfloat16 and out.is_contiguous()
    # the same kernel through the Python path, into a poisoned out, checked against float64
    want = check_against_oracle("scaled_gemm", a, b, scale_a, scale_b, backend="cpu")
    assert torch.equal(out, want)


@pytest.mark.parametrize("shapes", [((), ()), ((1,), (1,)), ((1, 1), (1, 1)), ((), (1, 1))],
                         ids=["0-d", "1-d", "2-d", "mixed"])
def test_every_tensor_wise_scale_shape(shapes, python_path_calls):
    a, b = _operands(torch.float8_e4m3fn, 5, 9, 70, seed=1)
    scale_a, scale_b = (torch.full(s, v) for s, v in zip(shapes, (0.5, 3.0)))
    out = hetero.scaled_gemm(a, b, scale_a, scale_b)
    assert python_path_calls == []
    assert torch.equal(out, hetero.scaled_gemm(a, b, scale_a, scale_b, backend="cpu"))


@pytest.mark.parametrize("layout", ["w.t()", "row-major b", "a.t()"])
@pytest.mark.parametrize("m,n,k", SIZES + [(64, 33, 1024), (1, 301, 2100)])
def test_int8_without_scales_is_served_natively_as_int_mm(m, n, k, layout, python_path_calls):
    a, b = _operands(torch.int8, m, n, k, seed=m + k, layout=layout)
    with hetero.use("cpu"):
        out = hetero.scaled_gemm(a, b, None, None, out_dtype=torch.int32)
    assert python_path_calls == []
    assert out.dtype == torch.int32 and out.is_contiguous()
    assert torch.equal(out, a.int() @ b.int())  # exact


def test_the_decision_is_dispatchs_and_cached_natively(python_path_calls):
    a, b = _operands(torch.float8_e5m2, 6, 5, 64, seed=2)
    scale_a, scale_b = scales("row", 6, 5, 64, seed=4)
    with hetero.use("reference"):  # a kernel written in Python: the Python path
        check_against_oracle("scaled_gemm", a, b, scale_a, scale_b, backend="reference")
        hetero.scaled_gemm(a, b, scale_a, scale_b)
    assert len(python_path_calls) == 2
    with hetero.use("cpu"):
        before = route.decisions()
        hetero.scaled_gemm(a, b, scale_a, scale_b)
        hetero.scaled_gemm(a, b, scale_a, scale_b)
        assert route.decisions() == before + 1 and len(python_path_calls) == 2
    dispatch.clear_cache()
    assert route.decisions() == 0


@pytest.mark.parametrize("call", [
    lambda a, b, sa, sb: hetero.scaled_gemm(a, b, sa, sb, bias=torch.ones(5)),
    lambda a, b, sa, sb: hetero.scaled_gemm(a, b, sa, sb, out=torch.empty(6, 5, dtype=torch.bfloat16)),
    lambda a, b, sa, sb: hetero.scaled_gemm(a, b, sa, sb, out_dtype=torch.float32),
    lambda a, b, sa, sb: hetero.scaled_gemm(a, b, sa, sb, backend="cpu"),
    lambda a, b, sa, sb: hetero.scaled_gemm(a, b, *scales("block", 6, 5, 128, seed=1)),
    lambda a, b, sa, sb: hetero.scaled_gemm(a, b, None, None, out_dtype=torch.int32,
                                            out=torch.empty(6, 5, dtype=torch.int32)),
], ids=["bias", "out", "out_dtype", "backend", "block", "int_mm-out"])
def test_other_calls_take_the_python_path(call, python_path_calls):
    a, b = _operands(torch.int8, 6, 5, 128, seed=5)
    call(a, b, *scales("row", 6, 5, 128, seed=6))
    assert len(python_path_calls) == 1


def test_a_scale_that_requires_grad_is_refused_as_before(python_path_calls):
    a, b = _operands(torch.float8_e4m3fn, 2, 3, 8, seed=7)
    scale_a, scale_b = scales("tensor", 2, 3, 8, seed=8)
    with pytest.raises(RuntimeError, match="autograd"):
        hetero.scaled_gemm(a, b, scale_a.requires_grad_(), scale_b)
    assert len(python_path_calls) == 1


f8 = torch.float8_e4m3fn


@pytest.mark.parametrize("args,error,match", [
    ((quantized((2, 3), f8, 1), quantized((4, 5), f8, 2), torch.ones(1), torch.ones(1)),
     ValueError, "b: expected 3 rows"),
    ((quantized((2, 3), f8, 1), quantized((3, 5), torch.float8_e5m2, 2), torch.ones(1),
      torch.ones(1)), TypeError, "b:"),
    ((quantized((2, 3), f8, 1), quantized((3, 5), f8, 2), torch.ones(2, 1), torch.ones(1, 4)),
     ValueError, "scale_b"),
    ((quantized((2, 3), f8, 1), quantized((3, 5), f8, 2), torch.ones(3, 1), torch.ones(1, 5)),
     ValueError, "scale_a"),
    ((quantized((2, 3), f8, 1), quantized((3, 5), f8, 2), torch.ones(1, dtype=torch.float64),
      torch.ones(1)), TypeError, "scale_a"),
    ((torch.ones(2, 3), torch.ones(3, 5), torch.ones(1), torch.ones(1)), TypeError, "a:"),
    (([[1]], quantized((1, 5), f8, 2), torch.ones(1), torch.ones(1)), TypeError, "a:"),
    ((quantized((2, 3), f8, 1), quantized((3, 5), f8, 2), torch.ones(1), None), TypeError,
     "scale_b"),
    ((quantized((2, 3), f8, 1), quantized((3, 5), f8, 2), None, None), TypeError, "scale_a"),
])
def test_bad_input_raises_the_named_errors(args, error, match):
    with pytest.raises(error, match=match):
        hetero.scaled_gemm(*args)
    if args[2] is None and args[3] is None:
        with pytest.raises(error, match=match):
            hetero.scaled_gemm(*args, out_dtype=torch.int32)
