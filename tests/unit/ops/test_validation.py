"""Bad input: every case a clear TypeError/ValueError naming the argument, raised
before any kernel runs; empty tensors give correct empty results."""

from __future__ import annotations

import pytest
import torch

import hetero
from hetero.testing import randn

f32 = torch.float32


def A(*shape, dtype=f32):
    return randn(*shape, dtype=dtype, seed=0)


GEMM_BAD = [
    # (args, kwargs, exception, message)
    (([[1.0]], A(1, 1)), {}, TypeError, r"a: expected a torch.Tensor, got list"),
    ((A(2, 2), 3.0), {}, TypeError, r"b: expected a torch.Tensor, got float"),
    ((A(3), A(3, 2)), {}, ValueError, r"a: expected at least 2 dims \(\.\.\., M, K\), got shape \(3,\)"),
    ((A(2, 3), A(3)), {}, ValueError, r"b: expected at least 2 dims"),
    ((A(2, 3), A(4, 2)), {}, ValueError, r"b: expected 3 rows to match a's K"),
    ((A(2, 2, 3), A(3, 3, 2)), {}, ValueError, r"b: batch dims \(3,\) do not broadcast with a's \(2,\)"),
    ((A(2, 3), A(3, 2, dtype=torch.float16)), {}, TypeError, r"b: dtype float16 does not match a's float32"),
    ((A(2, 3).int(), A(3, 2).int()), {}, TypeError, r"a: dtype int32 is not supported"),
    ((A(2, 3), A(3, 2, dtype=torch.float64).to(torch.complex64)), {}, TypeError, r"b: dtype complex64"),
    ((A(2, 3), A(3, 2)), {"bias": A(3)}, ValueError, r"bias: shape \(3,\) does not broadcast to the output's \(2, 2\)"),
    ((A(2, 3), A(3, 2)), {"bias": A(2).double()}, TypeError, r"bias: expected dtype float32, got float64"),
    ((A(2, 3), A(3, 2)), {"bias": "x"}, TypeError, r"bias: expected a torch.Tensor"),
    ((A(2, 3), A(3, 2)), {"alpha": "2"}, TypeError, r"alpha: expected a real number, got str"),
    ((A(2, 3), A(3, 2)), {"beta": 1j}, TypeError, r"beta: expected a real number, got complex"),
    ((A(2, 3), A(3, 2)), {"out": A(3, 2)}, ValueError, r"out: expected shape \(2, 2\), got \(3, 2\)"),
    ((A(2, 3), A(3, 2)), {"out": A(2, 2).double()}, TypeError, r"out: expected dtype float32, got float64"),
    ((A(2, 3), A(3, 2)), {"out": [0]}, TypeError, r"out: expected a torch.Tensor"),
    ((A(2, 3), A(3, 2)), {"backend": 7}, TypeError, r"'int' object is not iterable"),
]


@pytest.mark.parametrize("args, kwargs, exc, message", GEMM_BAD)
def test_gemm_rejects_bad_input(args, kwargs, exc, message):
    with pytest.raises(exc, match=message):
        hetero.gemm(*args, **kwargs)


def test_gemm_rejects_mixed_devices():
    a = A(2, 3)
    b = torch.empty(3, 2, device="meta")
    with pytest.raises(ValueError, match=r"b: on device meta, but a is on cpu"):
        hetero.gemm(a, b)


def test_gemm_rejects_out_that_aliases_an_input():
    a = A(3, 3)
    with pytest.raises(ValueError, match="out: shares memory with a"):
        hetero.gemm(a, A(3, 3), out=a)


def test_gemm_refuses_to_drop_autograd_silently():
    a = A(2, 3).requires_grad_()
    with pytest.raises(RuntimeError, match="does not record autograd"):
        hetero.gemm(a, A(3, 2))
    with torch.no_grad():
        hetero.gemm(a, A(3, 2))


def test_gemm_does_not_modify_inputs():
    a, b, bias = A(4, 3), A(3, 5), A(5)
    copies = [t.clone() for t in (a, b, bias)]
    hetero.gemm(a, b, bias=bias, alpha=2.0, beta=0.5)
    for t, c in zip((a, b, bias), copies):
        assert torch.equal(t, c)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("a_shape, b_shape", [
    ((0, 3), (3, 4)), ((2, 3), (3, 0)), ((0, 0), (0, 0)), ((4, 0), (0, 5)),
    ((0, 2, 3), (3, 4)), ((2, 0, 3), (2, 3, 4))])
def test_gemm_empty_shapes_give_correct_results(backend, a_shape, b_shape):
    a, b = A(*a_shape), A(*b_shape)
    bias = A(b_shape[-1])
    out = hetero.gemm(a, b, bias=bias, beta=2.0, backend=backend)
    torch.testing.assert_close(out, torch.matmul(a, b) + 2.0 * bias)


ATT_BAD = [
    ((A(2, 3, 4), A(1, 2, 3, 4), A(1, 2, 3, 4)), {}, ValueError, r"q: expected 4 dims \(B, Hq, Sq, D\), got shape \(2, 3, 4\)"),
    ((A(1, 2, 3, 4), None, A(1, 2, 3, 4)), {}, TypeError, r"k: expected a torch.Tensor, got NoneType"),
    ((A(1, 2, 3, 4), A(1, 2, 3, 4), A(1, 2, 3)), {}, ValueError, r"v: expected 4 dims \(B, Hkv, Sk, D\)"),
    ((A(1, 2, 3, 4), A(1, 2, 3, 4, dtype=torch.bfloat16), A(1, 2, 3, 4)), {}, TypeError, r"k: dtype bfloat16 does not match q's float32"),
    ((A(1, 2, 3, 4), A(2, 2, 3, 4), A(2, 2, 3, 4)), {}, ValueError, r"k, v: batch sizes 2, 2 must equal q's 1"),
    ((A(1, 2, 3, 4), A(1, 2, 3, 5), A(1, 2, 3, 4)), {}, ValueError, r"k: head dim 5 must equal q's 4"),
    ((A(1, 2, 3, 4), A(1, 2, 3, 4), A(1, 2, 5, 4)), {}, ValueError, r"v: heads and length \(2, 5\) must equal k's \(2, 3\)"),
    ((A(1, 3, 3, 4), A(1, 2, 3, 4), A(1, 2, 3, 4)), {}, ValueError, r"k: 2 key/value heads must divide q's 3 heads"),
    ((A(1, 2, 3, 4), A(1, 2, 3, 4), A(1, 2, 3, 4)), {"causal": 1}, TypeError, r"causal: expected bool, got int"),
    ((A(1, 2, 3, 4), A(1, 2, 3, 4), A(1, 2, 3, 4)), {"scale": "0.5"}, TypeError, r"scale: expected a real number"),
    ((A(1, 2, 3, 4), A(1, 2, 3, 4), A(1, 2, 3, 4)), {"attn_mask": A(3, 3).int()}, TypeError, r"attn_mask: expected bool \(True = may attend\) or additive"),
    ((A(1, 2, 3, 4), A(1, 2, 3, 4), A(1, 2, 3, 4)), {"attn_mask": A(2, 3)}, ValueError, r"attn_mask: shape \(2, 3\) does not broadcast to \(B, Hq, Sq, Sk\) = \(1, 2, 3, 3\)"),
    ((A(1, 2, 3, 4), A(1, 2, 3, 4), A(1, 2, 3, 4)), {"out": A(1, 2, 3, 5)}, ValueError, r"out: expected shape \(1, 2, 3, 4\), got \(1, 2, 3, 5\)"),
    ((A(1, 2, 3, 0), A(1, 2, 3, 0), A(1, 2, 3, 4)), {}, ValueError, r"q: head dim must be at least 1"),
]


@pytest.mark.parametrize("args, kwargs, exc, message", ATT_BAD)
def test_attention_rejects_bad_input(args, kwargs, exc, message):
    with pytest.raises(exc, match=message):
        hetero.attention(*args, **kwargs)


@pytest.mark.parametrize("q_shape, kv_shape", [
    ((0, 2, 3, 4), (0, 2, 3, 4)), ((1, 0, 3, 4), (1, 1, 3, 4)), ((1, 2, 0, 4), (1, 2, 5, 4)),
    ((1, 2, 3, 4), (1, 2, 0, 4))])
def test_attention_empty_shapes_give_correct_results(q_shape, kv_shape):
    q, k, v = A(*q_shape), A(*kv_shape), A(*kv_shape)
    out = hetero.attention(q, k, v, causal=True, backend="reference")
    assert out.shape == q_shape
    assert torch.equal(out, torch.zeros(q_shape))  # no key visible -> zeros, not NaN
