"""hetero.gemm's common case served natively (hetero.native_entries.gemm_entry,
csrc/route/gemm_route.cpp): results against float64 on awkward shapes and views, that the
entry (not the Python path) serves them, what it leaves to the Python path, scopes,
threads, and that bad input still raises hetero's named errors. The same for
torch.ops.hetero.gemm's CPU kernel (gemm_op_entry), counted in hetero.stats()."""

from __future__ import annotations

import threading

import pytest
import torch

import hetero
from hetero import dispatch, native_route
from hetero.ops.gemm import api, torch_op
from hetero.ops.gemm.checks import ROUTED_LAYOUTS, gemm_operands
from hetero.ops.gemm.numerics import gemm_error_bound
from hetero.testing import check_within, randn

pytestmark = pytest.mark.skipif(native_route.unavailable() is not None,
                                reason=f"native route: {native_route.unavailable()}")
route = hetero._C.route if native_route.unavailable() is None else None


@pytest.fixture
def python_path_calls(python_path_calls_of):
    """The calls that reached hetero.gemm's Python path."""
    return python_path_calls_of(api)


def _check(out, a, b):
    check_within(out, torch.matmul(a.double(), b.double()),
                 gemm_error_bound(a, b, out_dtype=out.dtype))


SIZES = [(8, 8, 8), (0, 5, 3), (4, 0, 3), (4, 5, 0), (1, 1, 1), (7, 13, 11), (37, 130, 65)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", ROUTED_LAYOUTS)
@pytest.mark.parametrize("m,k,n", SIZES)
def test_the_common_case_is_served_natively_within_the_bound(m, k, n, layout, dtype,
                                                             python_path_calls):
    a, b = gemm_operands(layout, m, n, k, dtype=dtype)
    torch.full((m, n), float("nan"), dtype=dtype)  # freed: a poisoned block to reuse
    out = hetero.gemm(a, b)
    assert out.shape == (m, n) and out.dtype == dtype and out.is_contiguous()
    _check(out, a, b)
    assert python_path_calls == []
    assert torch.equal(out, hetero.gemm(a, b, backend="cpu"))  # the same kernel, in Python


def test_the_decision_is_dispatchs_and_cached_natively(python_path_calls):
    a, b = randn(6, 5, seed=3), randn(5, 4, seed=4)
    with hetero.use("torch"):
        assert torch.equal(hetero.gemm(a, b), torch.mm(a, b))  # PyTorch's kernel, natively
    with hetero.use("reference"):  # a kernel written in Python: hetero.gemm's own path
        _check(hetero.gemm(a, b), a, b)
    assert len(python_path_calls) == 1
    before = route.decisions()
    hetero.gemm(a, b)
    hetero.gemm(a, b)
    assert route.decisions() == before + 1 and len(python_path_calls) == 1
    dispatch.clear_cache()
    assert route.decisions() == 0


@pytest.mark.parametrize("call", [
    lambda a, b: hetero.gemm(a, b, alpha=2.0),
    lambda a, b: hetero.gemm(a, b, beta=0.5, bias=torch.ones(4)),
    lambda a, b: hetero.gemm(a, b, out=torch.empty(6, 4)),
    lambda a, b: hetero.gemm(a, b, backend="cpu"),
    lambda a, b: hetero.gemm(a.double(), b.double()),
    lambda a, b: hetero.gemm(a.expand(3, 6, 5), b),
], ids=["alpha", "bias", "out", "backend", "float64", "batched"])
def test_other_calls_take_the_python_path(call, python_path_calls):
    a, b = randn(6, 5, seed=5), randn(5, 4, seed=6)
    call(a, b)
    assert len(python_path_calls) == 1


def test_an_input_that_requires_grad_is_refused_as_before(python_path_calls):
    a = randn(6, 5, seed=5).requires_grad_()
    with pytest.raises(RuntimeError, match="hetero.gemm does not record autograd"):
        hetero.gemm(a, randn(5, 4, seed=6))
    with torch.no_grad():
        _check(hetero.gemm(a, randn(5, 4, seed=6)), a.detach(), randn(5, 4, seed=6))
    assert len(python_path_calls) == 2


@pytest.mark.parametrize("args,error,match", [
    ((randn(2, 3), randn(4, 5)), ValueError, "b: expected 3 rows"),
    ((randn(2, 3), randn(3, 4, dtype=torch.float16)), TypeError, "b:"),
    (([[1.0]], randn(1, 1)), TypeError, "a:"),
    ((randn(2, 3), "b"), TypeError, "b:"),
    ((torch.ones(2, 3, dtype=torch.int32), torch.ones(3, 2, dtype=torch.int32)), TypeError, "a:"),
    ((randn(3), randn(3, 2)), ValueError, "a: expected at least 2 dims"),
])
def test_bad_input_raises_hetero_gemms_named_errors(args, error, match):
    with pytest.raises(error, match=match):
        hetero.gemm(*args)


def test_a_scope_on_another_thread_is_its_own(python_path_calls):
    a, b = randn(5, 5, seed=7), randn(5, 5, seed=8)
    hetero.gemm(a, b)
    seen = {}

    def in_a_scope():
        with hetero.use("reference"):
            seen["out"] = hetero.gemm(a, b)

    thread = threading.Thread(target=in_a_scope)
    thread.start()
    thread.join()
    _check(seen["out"], a, b)
    assert len(python_path_calls) == 1  # the reference scope's call only
    hetero.gemm(a, b)
    assert len(python_path_calls) == 1


# ---------------------------------------------------------------- torch.ops.hetero.gemm
@pytest.fixture
def python_kernel_calls(python_path_calls_of):
    """The calls that reached torch.ops.hetero.gemm's Python kernel."""
    return python_path_calls_of(torch_op, "_serve")


@pytest.mark.parametrize("backend,kernel", [("cpu", "cpu.gemm"), ("torch", "torch.matmul")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", ROUTED_LAYOUTS)
def test_the_torch_ops_common_case_is_served_natively_and_counted(layout, dtype, backend, kernel,
                                                                 python_kernel_calls):
    a, b = gemm_operands(layout, 37, 19, 23, dtype=dtype)
    hetero.reset_stats()
    with hetero.use(backend):
        out = torch.ops.hetero.gemm(a, b)
        out_again = torch.ops.hetero.gemm(a, b)
        assert python_kernel_calls == []
        want = torch_op._serve(a, b, None, 1.0, 1.0)  # the Python kernel: the same kernel
    assert torch.equal(out, want) and torch.equal(out_again, want)
    _check(out, a, b)
    counts = hetero.stats().served["gemm"][kernel]
    assert counts.calls == 3 and counts.flops == 3 * 2 * 37 * 19 * 23


@pytest.mark.parametrize("call", [
    lambda a, b: torch.ops.hetero.gemm(a, b, None, 2.0),
    lambda a, b: torch.ops.hetero.gemm(a, b, torch.ones(4), 1.0, 0.5),
    lambda a, b: torch.ops.hetero.gemm(a.expand(3, 6, 5), b),
    lambda a, b: torch.ops.hetero.gemm(a.double(), b.double()),
], ids=["alpha", "bias", "batched", "float64"])
def test_the_torch_ops_other_calls_take_its_python_kernel(call, python_kernel_calls):
    call(randn(6, 5, seed=5), randn(5, 4, seed=6))
    assert len(python_kernel_calls) == 1
    with hetero.use("reference"):  # a kernel written in Python
        torch.ops.hetero.gemm(randn(6, 5, seed=5), randn(5, 4, seed=6))
    assert len(python_kernel_calls) == 2


def test_the_torch_ops_calls_reach_hetero_counters_observers(python_kernel_calls):
    seen = []
    hetero.counters.observers.append(lambda op, kernel, args, why: seen.append((op, kernel)))
    try:
        torch.ops.hetero.gemm(randn(6, 5, seed=5), randn(5, 4, seed=6))
    finally:
        hetero.counters.observers.pop()
    assert len(python_kernel_calls) == 1 and [op for op, _ in seen] == ["gemm"]


def test_the_torch_ops_gradients_come_through_the_native_path(python_kernel_calls):
    a, b = randn(6, 5, seed=5).requires_grad_(), randn(5, 4, seed=6).requires_grad_()
    torch.ops.hetero.gemm(a, b).sum().backward()
    assert python_kernel_calls == []  # forward and both gradients' products
    ones = torch.ones(6, 4)
    torch.testing.assert_close(a.grad, ones @ b.detach().t())
    torch.testing.assert_close(b.grad, a.detach().t() @ ones)


def test_the_torch_ops_bad_input_raises_the_named_errors():
    with pytest.raises(ValueError, match="b: expected 3 rows"):
        torch.ops.hetero.gemm(randn(2, 3), randn(4, 5))
    with pytest.raises(TypeError, match="b:"):
        torch.ops.hetero.gemm(randn(2, 3), randn(3, 4, dtype=torch.float16))
