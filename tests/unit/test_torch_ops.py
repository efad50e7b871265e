"""torch.ops.hetero.*: opcheck, gradients (gradcheck on the reference, fp32 against
PyTorch), PyTorch as the bridge's last resort, and the counters they feed."""

from __future__ import annotations

import math

import pytest
import torch

import hetero
from hetero.ops.gemm import torch_op
from hetero.ops.attention.checks import attention_grads_reference
from hetero.testing import randn
from hetero.ops.attention.checks import attention_inputs as qkv


def attention_inputs(B, Hq, Hkv, Sq, Sk, D, Dv, *, mask=None, dtype=torch.float32, seed=0):
    """q, k, v and a mask (None, "bool": about a third masked, or "additive")."""
    q, k, v = qkv(B, Hq, Hkv, Sq, Sk, D, Dv, dtype=dtype, seed=seed)
    if mask == "bool":
        mask = torch.rand(Sq, Sk, generator=torch.Generator().manual_seed(seed)) > 0.3
    elif mask == "additive":
        mask = randn(1, Hq, Sq, Sk, dtype=dtype, seed=seed + 3)
    return q, k, v, mask


def _gemm_cases():
    a, b = randn(5, 7, seed=1), randn(7, 3, seed=2)
    yield "2d", (a, b)
    yield "bias_alpha_beta", (a, b, randn(3, seed=3), 0.5, 2.0)
    yield "transposed", (randn(7, 5, seed=4).t(), randn(3, 7, seed=5).t())
    yield "batched_broadcast", (randn(2, 1, 4, 6, seed=6), randn(3, 6, 5, seed=7))
    yield "empty", (randn(0, 4, seed=8), randn(4, 3, seed=9))


@pytest.mark.parametrize("case", list(_gemm_cases()), ids=lambda c: c[0])
def test_gemm_opcheck(case):
    args = tuple(t.requires_grad_() if isinstance(t, torch.Tensor) else t for t in case[1])
    torch.library.opcheck(torch.ops.hetero.gemm.default, args)


@pytest.mark.parametrize("mask,causal,gqa", [(None, False, False), (None, True, True),
                                             ("bool", False, True), ("additive", False, False)])
def test_attention_opcheck(mask, causal, gqa):
    q, k, v, m = attention_inputs(1, 4, 2 if gqa else 4, 5, 7, 16, 16, mask=mask, seed=3)
    args = (*(t.requires_grad_() for t in (q, k, v)), m, causal, None)
    torch.library.opcheck(torch.ops.hetero.attention_forward.default, args)
    torch.library.opcheck(torch.ops.hetero.attention.default, args)


def test_gradcheck_float64_on_reference():
    a, b, bias = (randn(*s, dtype=torch.float64, seed=i).requires_grad_()
                  for i, s in enumerate([(2, 3, 4), (4, 5), (5,)]))
    q, k, v, m = attention_inputs(1, 4, 2, 3, 5, 4, 3, dtype=torch.float64, mask="additive",
                                  seed=4)
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    with hetero.use("reference"):
        assert torch.autograd.gradcheck(
            lambda a, b, bias: torch.ops.hetero.gemm(a, b, bias, 0.5, 2.0), (a, b, bias))
        assert torch.autograd.gradgradcheck(lambda a, b: torch.ops.hetero.gemm(a, b), (a, b))
        for causal, mask in ((True, None), (False, m)):
            assert torch.autograd.gradcheck(
                lambda q, k, v: torch.ops.hetero.attention(q, k, v, mask, causal, 0.7),
                (q, k, v))
    assert set(hetero.stats().served["gemm"]) == {"reference.torch"}
    assert not hetero.stats().fallbacks


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gemm_grads_match_pytorch(dtype):
    a, b, bias = (randn(*s, dtype=dtype, seed=i).requires_grad_()
                  for i, s in enumerate([(3, 9, 13), (13, 6), (6,)]))
    grads = []
    for fn in (lambda: torch.addmm(bias, a.reshape(-1, 13), b, alpha=0.5, beta=2.0),
               lambda: torch.ops.hetero.gemm(a.reshape(-1, 13), b, bias, 0.5, 2.0)):
        out = fn()
        grads.append(torch.autograd.grad(out, (a, b, bias), randn(*out.shape, seed=9).to(dtype)))
    tol = dict(atol=1e-4, rtol=1e-4) if dtype is torch.float32 else dict(atol=0.1, rtol=0.02)
    for ours, theirs in zip(grads[1], grads[0]):
        torch.testing.assert_close(ours, theirs, **tol)


@pytest.mark.parametrize("Sq,Sk,causal,mask", [(6, 6, True, None), (3, 8, True, None),
                                               (7, 5, False, "bool")])
def test_attention_grads_match_float64(Sq, Sk, causal, mask):
    q, k, v, m = attention_inputs(2, 4, 2, Sq, Sk, 16, 8, mask=mask, seed=5)
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    dout = randn(2, 4, Sq, 8, seed=6)
    out = torch.ops.hetero.attention(q, k, v, m, causal, None)
    grads = torch.autograd.grad(out, (q, k, v), dout)
    expected = attention_grads_reference(q, k, v, dout, m, causal)
    for name, ours, ref in zip("qkv", grads, expected):
        assert ours.dtype is torch.float32
        err = (ours.double() - ref).abs().max().item()
        assert err <= 1e-5 * (1 + ref.abs().max().item()), f"d{name}: {err}"
    assert set(hetero.stats().served["attention_backward"]) == {"cpu.flash"}


def test_the_torch_backend_serves_what_cpu_cannot_and_is_counted_as_served():
    a, b = randn(4, 5, dtype=torch.float64, seed=1), randn(5, 3, dtype=torch.float64, seed=2)
    with pytest.warns(hetero.HeteroFallbackWarning, match="runs on torch.matmul because cpu.gemm"):
        out = torch.ops.hetero.gemm(a, b)
    torch.testing.assert_close(out, a @ b)
    (kernel, count), = hetero.stats().served["gemm"].items()
    assert kernel == "torch.matmul" and count.calls == 1 and count.flops == 2 * 4 * 3 * 5
    assert not hetero.stats().fallbacks


def test_pytorch_is_the_last_resort_and_counted(without_the_torch_backend):
    a, b = randn(4, 5, dtype=torch.float64, seed=1), randn(5, 3, dtype=torch.float64, seed=2)
    with pytest.warns(hetero.HeteroFallbackWarning, match="runs on PyTorch because cpu.gemm"):
        out = torch.ops.hetero.gemm(a, b)
    torch.testing.assert_close(out, a @ b)
    (reason, count), = hetero.stats().fallbacks["gemm"].items()
    assert "dtype float64" in reason and count.calls == 1 and count.flops == 2 * 4 * 3 * 5
    assert "gemm" not in hetero.stats().served


@pytest.mark.parametrize("served_by", ["torch.sdpa", "PyTorch"])
def test_attention_cpu_cannot_serve_keeps_gradients(served_by, request):
    if served_by == "PyTorch":
        request.getfixturevalue("without_the_torch_backend")
    q, k, v, _ = attention_inputs(1, 2, 2, 4, 6, 300, 300, seed=7)  # head dim above cpu's
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    hetero.set_fallback_policy("silent")
    out = torch.ops.hetero.attention(q, k, v, None, True, None)
    grads = torch.autograd.grad(out, (q, k, v), torch.ones_like(out))
    expected = attention_grads_reference(q, k, v, torch.ones_like(out), None, True)
    for ours, ref in zip(grads, expected):
        torch.testing.assert_close(ours.double(), ref, atol=1e-5, rtol=1e-5)
    stats = hetero.stats()
    if served_by == "PyTorch":
        assert set(stats.fallbacks) == {"attention", "attention_backward"} and not stats.served
        assert all("head dim 300" in r for per in stats.fallbacks.values() for r in per)
    else:
        assert not stats.fallbacks
        assert {op: set(per) for op, per in stats.served.items()} == {
            "attention": {"torch.sdpa"}, "attention_backward": {"torch.sdpa"}}


def test_error_policy_and_exclusive_order_raise():
    a, b = randn(4, 5, dtype=torch.float64), randn(5, 3, dtype=torch.float64)
    hetero.set_fallback_policy("error")
    with pytest.raises(hetero.FallbackError):
        torch.ops.hetero.gemm(a, b)
    hetero.set_fallback_policy(None)
    with hetero.use("cpu"), pytest.raises(hetero.DispatchError, match="dtype float64"):
        torch.ops.hetero.gemm(a, b)


def test_mask_requiring_grad_is_refused():
    q, k, v, m = attention_inputs(1, 2, 2, 4, 4, 8, 8, mask="additive", seed=8)
    q.requires_grad_()
    with pytest.raises(ValueError, match="attn_mask: .*no gradient"):
        torch.ops.hetero.attention(q, k, v, m.requires_grad_(), False, None)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="b: expected 3 rows"):
        torch.ops.hetero.gemm(randn(2, 3), randn(4, 5))
    with pytest.raises(TypeError, match="k: dtype float16"):
        torch.ops.hetero.attention(randn(1, 1, 2, 4), randn(1, 1, 2, 4, dtype=torch.float16),
                                   randn(1, 1, 2, 4))


def test_inputs_are_not_modified():
    a, b, bias = randn(6, 5, seed=1), randn(5, 4, seed=2), randn(4, seed=3)
    q, k, v, m = attention_inputs(1, 2, 1, 3, 5, 8, 8, mask="bool", seed=4)
    saved = [t.clone() for t in (a, b, bias, q, k, v, m)]
    torch.ops.hetero.gemm(a, b, bias, 2.0, 3.0)
    torch.ops.hetero.attention(q, k, v, m, False, 0.3)
    for before, after in zip(saved, (a, b, bias, q, k, v, m)):
        assert torch.equal(before, after)


def test_lse_is_natural_log_and_inf_for_blind_rows():
    q, k, v, _ = attention_inputs(1, 1, 1, 3, 2, 4, 4, seed=9)
    mask = torch.tensor([[True, True], [False, False], [True, False]])
    for backend in ("cpu", "reference"):
        with hetero.use(backend):
            out, lse = torch.ops.hetero.attention_forward(q, k, v, mask, False, 0.5)
        s = (q @ k.transpose(-1, -2))[0, 0] * 0.5
        assert lse.dtype is torch.float32
        torch.testing.assert_close(lse[0, 0, 0], s[0].logsumexp(0))
        assert lse[0, 0, 1] == math.inf and torch.equal(out[0, 0, 1], torch.zeros(4))
        torch.testing.assert_close(lse[0, 0, 2], s[2, 0])


def test_ops_are_registered_in_torch():
    for name in ("gemm", "attention", "attention_forward", "attention_backward"):
        assert hasattr(torch.ops.hetero, name)
    assert torch_op.gemm._opoverload is torch.ops.hetero.gemm.default


def test_torch_compile_fullgraph_calls_the_ops():
    def layer(x, w, q, k, v):
        y = torch.ops.hetero.gemm(x, w.t(), None, 2.0, 1.0)
        return y.sum() + torch.ops.hetero.attention(q, k, v, None, True, None).sum()

    args = [randn(6, 8, seed=1), randn(5, 8, seed=2), *qkv(1, 4, 2, 6, 9, 8, 8, seed=3)]
    expected = layer(*args)
    torch._dynamo.reset()
    got = torch.compile(layer, fullgraph=True)(*args)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-5)
    assert hetero.stats().served["gemm"]["cpu.gemm"].calls == 2  # eager + compiled
