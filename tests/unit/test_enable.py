"""hetero.enable(native=False): which PyTorch calls are routed, what falls back (and is counted),
and that disabling restores PyTorch exactly."""

from __future__ import annotations

import threading

import pytest
import torch
import torch.nn.functional as F

import hetero
from hetero.testing import randn


def _served(op="gemm"):
    return sum(c.calls for c in hetero.stats().served.get(op, {}).values())


def _fallback_reasons(op="gemm"):
    return set(hetero.stats().fallbacks.get(op, {}))


A, B, C = randn(5, 7, seed=1), randn(7, 3, seed=2), randn(3, seed=3)
X3, W = randn(2, 5, 7, seed=4), randn(3, 7, seed=5)
ROUTED = {
    "torch.mm": lambda: torch.mm(A, B),
    "Tensor.mm": lambda: A.mm(mat2=B),
    "torch.bmm": lambda: torch.bmm(X3, X3.mT),
    "torch.addmm": lambda: torch.addmm(C, A, B, beta=0.5, alpha=2),
    "Tensor.addmm": lambda: C.expand(5, 3).addmm(A, B),
    "torch.matmul (folded)": lambda: torch.matmul(X3, B),
    "@ (batched, broadcast)": lambda: X3.unsqueeze(0) @ X3.mT.unsqueeze(1),
    "Tensor.matmul": lambda: A.t().matmul(A),
    "F.linear": lambda: F.linear(X3, W, C),
    "F.linear (no bias, transposed input)": lambda: F.linear(X3.mT.contiguous().mT, W),
}


@pytest.mark.parametrize("name", list(ROUTED))
def test_matmul_family_is_routed_and_correct(name):
    expected = ROUTED[name]()
    with hetero.enabled(native=False):
        got = ROUTED[name]()
    assert _served("gemm") == 1 and not hetero.stats().fallbacks
    assert got.shape == expected.shape and got.dtype == expected.dtype
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


EMPTY = {
    "@, K = 0 with batch dims": lambda: randn(2, 3, 0, seed=1) @ randn(0, 4, seed=2),
    "F.linear, K = 0 with a bias": lambda: F.linear(randn(2, 3, 0, seed=1), randn(4, 0, seed=2),
                                                    randn(4, seed=3)),
    "@, no batch": lambda: randn(0, 3, 5, seed=1) @ randn(5, 4, seed=2),
    "@, no rows": lambda: randn(2, 0, 5, seed=1) @ randn(5, 4, seed=2),
    "F.linear, nothing at all": lambda: F.linear(randn(0, 3, 0, seed=1), randn(4, 0, seed=2)),
}


@pytest.mark.parametrize("name", list(EMPTY))
def test_empty_products_are_routed_and_equal_pytorch(name):
    expected = EMPTY[name]()
    with hetero.enabled(native=False):
        got = EMPTY[name]()
    assert not hetero.stats().fallbacks
    assert got.shape == expected.shape and torch.equal(got, expected)


@pytest.mark.parametrize("kwargs", [dict(is_causal=True), dict(is_causal=True, enable_gqa=True),
                                    dict(attn_mask="bool"), dict(scale=0.3)])
def test_sdpa_is_routed_and_correct(kwargs):
    gqa = kwargs.get("enable_gqa", False)
    q, k, v = randn(2, 4, 9, 16, seed=1), randn(2, 2 if gqa else 4, 9, 16, seed=2), \
        randn(2, 2 if gqa else 4, 9, 8, seed=3)
    if kwargs.get("attn_mask") == "bool":
        kwargs = dict(attn_mask=torch.rand(9, 9, generator=torch.Generator().manual_seed(0)) > .2)
    expected = F.scaled_dot_product_attention(q, k, v, **kwargs)
    with hetero.enabled(native=False):
        got = F.scaled_dot_product_attention(q, k, v, **kwargs)
    assert _served("attention") == 1 and not hetero.stats().fallbacks
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_sdpa_causal_with_fewer_queries_keeps_pytorch_top_left_alignment():
    q, k, v = randn(1, 2, 3, 8, seed=1), randn(1, 2, 7, 8, seed=2), randn(1, 2, 7, 8, seed=3)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    with hetero.enabled(native=False):
        got = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert _served("attention") == 1
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


FALLBACKS = {
    "out=": (lambda: torch.mm(A, B, out=torch.empty(5, 3)), "mm: unsupported arguments"),
    "1-D": (lambda: torch.matmul(A, randn(7)), "matmul: 1-D operand"),
    "int": (lambda: torch.mm(torch.ones(2, 3, dtype=torch.int64),
                             torch.ones(3, 2, dtype=torch.int64)), "mm: dtype int64"),
    "linear 1-D": (lambda: F.linear(randn(7), W), "linear: 1-D input"),
    "dropout": (lambda: F.scaled_dot_product_attention(*(randn(1, 1, 4, 8, seed=i)
                                                         for i in range(3)), dropout_p=0.5),
                "scaled_dot_product_attention: dropout_p > 0"),
    "3-D sdpa": (lambda: F.scaled_dot_product_attention(*(randn(2, 4, 8, seed=i)
                                                          for i in range(3))),
                 "scaled_dot_product_attention: q, k, v not 4-D"),
}


@pytest.mark.parametrize("name", list(FALLBACKS))
def test_unfit_calls_fall_back_with_their_reason(name):
    call, reason = FALLBACKS[name]
    torch.manual_seed(0)
    expected = call()
    with hetero.enabled(native=False):
        torch.manual_seed(0)
        got = call()
    assert torch.equal(got, expected)
    reasons = _fallback_reasons("attention") | _fallback_reasons("gemm")
    assert len(reasons) == 1 and next(iter(reasons)).startswith(reason), reasons
    assert not hetero.stats().served


def test_a_call_the_torch_backend_serves_runs_as_written_and_counts_as_served():
    a, b = A.double(), B.double()
    hetero.set_fallback_policy("silent")
    with hetero.enabled(native=False):
        got = a @ b
    assert torch.equal(got, a @ b)
    assert not hetero.stats().fallbacks
    assert hetero.stats().served["gemm"]["torch.matmul"].calls == 1


def test_without_a_hetero_kernel_pytorch_runs_it_counted_with_the_reason(
        without_the_torch_backend):
    a, b = A.double(), B.double()
    hetero.set_fallback_policy("silent")
    with hetero.enabled(native=False):
        got = a @ b
    assert torch.equal(got, a @ b)
    (reason,) = _fallback_reasons("gemm")
    assert "cpu.gemm: dtype float64" in reason


def test_mask_that_needs_a_gradient_stays_with_pytorch():
    q, k, v = (randn(1, 2, 4, 8, seed=i).requires_grad_() for i in range(3))
    mask = randn(1, 1, 4, 4, seed=5).requires_grad_()
    with hetero.enabled(native=False):
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    out.sum().backward()
    assert mask.grad is not None
    assert _fallback_reasons("attention") == {
        "scaled_dot_product_attention: attn_mask requires grad"}


@pytest.mark.parametrize("call", [lambda: torch.mm(A, A), lambda: F.linear(A, B),
                                  lambda: torch.bmm(X3, X3),
                                  lambda: F.scaled_dot_product_attention(
                                      randn(1, 4, 3, 8), randn(1, 2, 3, 8), randn(1, 2, 3, 8))])
def test_pytorch_errors_stay_pytorch_errors(call):
    with pytest.raises(RuntimeError) as plain:
        call()
    with hetero.enabled(native=False), pytest.raises(RuntimeError) as routed:
        call()
    assert str(routed.value) == str(plain.value)
    assert not hetero.stats().served and not hetero.stats().fallbacks


def test_disable_restores_pytorch_exactly():
    from torch.overrides import _get_current_function_mode_stack

    before = [f() for f in ROUTED.values()]
    hetero.enable(native=False)
    assert hetero.is_enabled() and len(_get_current_function_mode_stack()) == 1
    hetero.enable(native=False, ops="attention")  # again: reconfigures, no second mode
    assert len(_get_current_function_mode_stack()) == 1
    hetero.disable()
    assert not hetero.is_enabled() and not _get_current_function_mode_stack()
    hetero.disable()  # a no-op when not enabled
    after = [f() for f in ROUTED.values()]
    assert all(torch.equal(x, y) for x, y in zip(before, after))
    assert not hetero.stats().served


def test_ops_and_devices_filters_and_nesting():
    q = randn(1, 1, 4, 8)
    with hetero.enabled(native=False, ops="gemm"):
        A @ B
        F.scaled_dot_product_attention(q, q, q)
        with hetero.enabled(native=False, ops=["attention"]):
            A @ B
            F.scaled_dot_product_attention(q, q, q)
        A @ B
    assert _served("gemm") == 2 and _served("attention") == 1
    hetero.reset_stats()
    with hetero.enabled(native=False, devices=["meta"]):
        A @ B
    assert _fallback_reasons() == {"matmul: device type 'cpu' is not enabled"}
    with pytest.raises(ValueError, match="ops: unknown"):
        hetero.enable(native=False, ops="conv")


def test_disable_refuses_to_end_a_with_block():
    with hetero.enabled(native=False):
        with pytest.raises(RuntimeError, match="with .*enabled"):
            hetero.disable()
    assert not hetero.is_enabled()


def test_enable_is_per_thread():
    hetero.enable(native=False)
    seen = []
    thread = threading.Thread(target=lambda: seen.append(hetero.is_enabled()))
    thread.start()
    thread.join()
    hetero.disable()
    assert seen == [False]


def test_training_through_routed_calls_matches_pytorch():
    torch.manual_seed(0)
    layer = torch.nn.Sequential(torch.nn.Linear(7, 16), torch.nn.GELU(), torch.nn.Linear(16, 3))
    x = randn(4, 5, 7, seed=2)
    grads = []
    for on in (False, True):
        layer.zero_grad()
        with hetero.enabled(native=False) if on else torch.enable_grad():
            layer(x).square().sum().backward()
        grads.append([p.grad.clone() for p in layer.parameters()])
    for ours, theirs in zip(grads[1], grads[0]):
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    assert _served("gemm") == 2 + 3  # forward, then backward without the first input's
    assert not hetero.stats().fallbacks


def test_torch_compile_fullgraph_routes_to_hetero_ops():
    def block(x, w, q, k, v):
        h = F.linear(x, w).relu() @ w
        return h.sum() + F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                        enable_gqa=True).sum()

    args = [randn(2, 6, 8, seed=1), randn(5, 8, seed=2), randn(1, 4, 6, 8, seed=3),
            randn(1, 2, 6, 8, seed=4), randn(1, 2, 6, 8, seed=5)]
    args = [t.requires_grad_() for t in args]
    expected = block(*args)
    expected_grads = torch.autograd.grad(expected, args)
    torch._dynamo.reset()
    compiled = torch.compile(block, fullgraph=True)  # a graph break would raise
    with hetero.enabled(native=False):
        got = compiled(*args)
        grads = torch.autograd.grad(got, args)
    served = hetero.stats().served
    assert sum(c.calls for c in served["gemm"].values()) == 2 + 4  # forward + backward
    assert set(served) == {"gemm", "attention", "attention_backward"}
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-5)
    for ours, theirs in zip(grads, expected_grads):
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    hetero.reset_stats()
    torch.testing.assert_close(compiled(*args), expected)  # guards: recompiled without hetero
    assert not hetero.stats().served
