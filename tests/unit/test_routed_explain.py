"""``hetero.explain`` of a PyTorch function: what ``hetero.enable()`` would do with the
call, checked against what the routed call then runs and counts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import hetero
from hetero import native_route, tuned
from hetero.enable import routes
from hetero.routed_explain import RoutedCall
from hetero.testing import randn
from hetero.tuned import Entry, Table

needs_native = pytest.mark.skipif(native_route.unavailable() is not None,
                                  reason=f"native route: {native_route.unavailable()}")


@pytest.fixture
def table_in_use():
    yield hetero.set_tuned_table
    hetero.set_tuned_table(None)


def _entry(op, bucket, kernel, dtype="float32"):
    return Entry(tuned.device_name(torch.device("cpu")), op, dtype, bucket, kernel, 1e-3,
                 kernel, 1e-3)


def _served(op):
    return {name for name, count in hetero.stats().served.get(op, {}).items() if count.calls}


@needs_native
def test_the_native_route_is_explained_by_its_own_entries(table_in_use):
    x, w = randn(2, 3, 64, seed=1), randn(32, 64, seed=2)
    table_in_use(Table([_entry("gemm", (1, 1, 1, 0), "cpu.gemm")]))  # gemm calls bucketed
    step, = hetero.explain(F.linear, x, w).steps
    assert step.call.startswith("aten.mm((6, 64) float32, (64, 32) float32")
    bucket = step.decision.traits.bucket
    # The route's entry and the plain one (hetero.gemm's) disagree: each call follows its own.
    table_in_use(Table([_entry("gemm@native", bucket, "torch.matmul"),
                        _entry("gemm", bucket, "cpu.gemm")]))
    explained = hetero.explain(F.linear, x, w)
    assert isinstance(explained, RoutedCall) and explained.route == "the native route"
    assert [k.qualname for k in explained.chosen] == ["torch.matmul"]
    assert "(used)" in str(explained)
    hetero.reset_stats()
    with hetero.enabled(native=True):
        assert [k.qualname for k in hetero.explain(F.linear, x, w).chosen] == ["torch.matmul"]
        F.linear(x, w)
    assert _served("gemm") == {"torch.matmul"}
    assert hetero.explain("gemm", x.reshape(6, 64), w.t()).chosen.qualname == "cpu.gemm"


@needs_native
def test_a_call_reaching_no_routed_operator_says_so_and_is_not_counted():
    x, w, b = randn(4, 64, seed=3), randn(32, 64, seed=4), randn(32, seed=5)
    explained = hetero.explain(F.linear, x, w, b)  # aten addmm: not taken by the route
    assert explained.steps == [] and explained.chosen == []
    assert "reaches no operator the native route takes" in str(explained)
    hetero.reset_stats()
    with hetero.enabled(native=True):
        F.linear(x, w, b)
    assert "gemm" not in hetero.stats().served and "gemm" not in hetero.stats().fallbacks


@needs_native
def test_a_call_left_to_pytorch_gives_the_reason_the_route_counts():
    q, k = randn(1, 4, 1, 32, seed=6), randn(1, 4, 16, 32, seed=7)
    step, = hetero.explain(F.scaled_dot_product_attention, q, k, k, is_causal=True).steps
    assert step.decision is None and "Sq != Sk" in step.left_to_pytorch
    hetero.reset_stats()
    with hetero.enabled(native=True):
        F.scaled_dot_product_attention(q, k, k, is_causal=True)
    reasons = hetero.stats().fallbacks["attention"]
    assert any(step.left_to_pytorch in why for why in reasons)


@needs_native
def test_sdpa_on_pytorchs_math_path_shows_its_routed_gemms():
    q, k, v = randn(1, 2, 5, 16, seed=8), randn(1, 2, 7, 16, seed=9), randn(1, 2, 7, 8, seed=10)
    explained = hetero.explain(F.scaled_dot_product_attention, q, k, v)  # Dv != D: math
    assert explained.steps and all(s.call.startswith("aten.bmm") for s in explained.steps)
    assert all(s.decision is not None for s in explained.steps)


@needs_native
def test_explaining_computes_nothing_and_modifies_nothing():
    x, w = randn(3, 8, seed=11), randn(5, 8, seed=12)
    saved = x.clone(), w.clone()
    hetero.reset_stats()
    explained = hetero.explain(torch.matmul, x, w.t())
    assert [k.qualname for k in explained.chosen] == ["cpu.gemm"]
    assert torch.equal(x, saved[0]) and torch.equal(w, saved[1])
    assert hetero.stats().served == {} and hetero.stats().fallbacks == {}


def test_the_function_mode_is_explained_as_it_routes():
    x, w, b = randn(4, 64, seed=13), randn(32, 64, seed=14), randn(32, seed=15)
    with hetero.enabled(native=False):
        explained = hetero.explain(F.linear, x, w, b)
        assert explained.route == "the function mode"
        (kernel,) = explained.chosen
        hetero.reset_stats()
        F.linear(x, w, b)
        ints = torch.ones(2, 3, dtype=torch.int64)
        step, = hetero.explain(torch.mm, ints, ints.t()).steps
    assert _served("gemm") == {kernel.qualname}
    assert step.decision is None and step.left_to_pytorch == "dtype int64 is not served"
    with hetero.enabled(ops="attention", native=False):
        assert hetero.explain(F.linear, x, w).not_routed == "gemm is not enabled"


@needs_native
def test_ops_the_native_route_does_not_serve_point_to_the_function_mode():
    with hetero.enabled(ops="attention"):
        assert hetero.explain(F.linear, randn(2, 4), randn(3, 4)).not_routed == \
            "gemm is not enabled"
    varlen = next(f for f in routes()
                  if "varlen" in str(f))
    explained = hetero.explain(varlen, None)
    assert "hetero.enable(native=False) routes it" in explained.not_routed


def test_bad_input_raises_as_the_call_would():
    with pytest.raises(RuntimeError):
        hetero.explain(torch.matmul, randn(2, 3), randn(4, 5))
