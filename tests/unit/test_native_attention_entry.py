"""hetero.attention without out or backend served natively
(hetero.native_entries.attention_entry, csrc/route/attention_route.cpp): results bitwise
against the Python path's kernel (cpu's flash kernel, or the torch backend's SDPA for a
decode step) and within bound of float64 on awkward shapes, masks and views; that the
entry (not the Python path) serves them, what it leaves to the Python path, cached
decisions, and that bad input still raises hetero's named errors. The same for
torch.ops.hetero.attention_forward's CPU kernel (attention_op_entry), counted."""

from __future__ import annotations

import math

import pytest
import torch

import hetero
from hetero import dispatch, native_route
from hetero.ops.attention import api, torch_op
from hetero.ops.attention.numerics import flops
from hetero.testing import check_against_oracle

pytestmark = pytest.mark.skipif(native_route.unavailable() is not None,
                                reason=f"native route: {native_route.unavailable()}")
route = hetero._C.route if native_route.unavailable() is None else None
DTYPES = [pytest.param(d, id=str(d).removeprefix("torch."))
          for d in (torch.float32, torch.bfloat16, torch.float16)]


@pytest.fixture
def python_path_calls(python_path_calls_of):
    """The calls that reached hetero.attention's Python path."""
    return python_path_calls_of(api)


def _qkv(b, hq, hkv, sq, sk, d, dv=None, dtype=torch.float32, seed=0, as_transformers=False):
    """q (b, hq, sq, d), k (b, hkv, sk, d), v (b, hkv, sk, dv); with ``as_transformers``
    views of (b, s, h, d) storage, as a transformers model hands them over."""
    gen = torch.Generator().manual_seed(seed)

    def make(h, s, dim):
        if as_transformers:
            return torch.randn(b, s, h, dim, generator=gen).to(dtype).transpose(1, 2)
        return torch.randn(b, h, s, dim, generator=gen).to(dtype)
    return make(hq, sq, d), make(hkv, sk, d), make(hkv, sk, dv or d)


SHAPES = {  # (b, hq, hkv, sq, sk, d, dv)
    "decode": (2, 8, 2, 1, 37, 64, 64),
    "decode-one-key": (1, 4, 4, 1, 1, 32, 32),
    "prompt": (2, 6, 3, 17, 17, 40, 40),
    "chunk": (1, 4, 1, 5, 40, 16, 24),
    "more-queries": (1, 2, 2, 9, 4, 8, 8),  # causal: the first rows see no key
    "no-keys": (1, 2, 1, 3, 0, 8, 8),
    "long-mqa": (1, 3, 1, 2, 300, 128, 128),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_cpus_kernel_serves_natively(shape, causal, dtype, python_path_calls):
    q, k, v = _qkv(*shape, dtype=dtype, seed=sum(shape))
    with hetero.use("cpu"):
        out = hetero.attention(q, k, v, causal=causal)
    assert python_path_calls == []
    b, hq, _, sq, _, _, dv = shape
    assert out.shape == (b, hq, sq, dv) and out.dtype == dtype and out.is_contiguous()
    # the same kernel through the Python path, into a poisoned out, checked against float64
    want = check_against_oracle("attention", q, k, v, causal=causal, backend="cpu")
    assert torch.equal(out, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize("keys", [1, 19, 300])
def test_the_torch_backends_decode_step_runs_natively(keys, causal, dtype, python_path_calls):
    q, k, v = _qkv(3, 8, 2, 1, keys, 64, dtype=dtype, seed=keys, as_transformers=True)
    with hetero.use("torch"):
        out = hetero.attention(q, k, v, causal=causal, scale=0.2)
    assert python_path_calls == []
    assert out.shape == (3, 8, 1, 64) and out.stride() == (512, 64, 64, 1)
    want = check_against_oracle("attention", q, k, v, causal=causal, scale=0.2,
                                backend="torch")
    assert torch.equal(out, want)


def test_the_torch_backends_other_calls_take_the_python_path(python_path_calls):
    with hetero.use("torch"):
        q, k, v = _qkv(1, 4, 2, 3, 30, 32, seed=1)  # three query rows: a causal mask
        assert torch.equal(hetero.attention(q, k, v, causal=True),
                           hetero.attention(q, k, v, causal=True, backend="torch"))
        q, k, v = _qkv(1, 4, 2, 1, 30, 32, 16, seed=2)  # value head dim differs
        hetero.attention(q, k, v)
        q, k, v = _qkv(1, 4, 2, 1, 30, 32, seed=3)
        q[0, 1, 0, 5] = math.nan  # the torch backend makes that row NaN itself
        out = hetero.attention(q, k, v)
        q, k, v = _qkv(1, 4, 2, 1, 30, 32, seed=4)
        hetero.attention(q, k, v, attn_mask=torch.rand(30) > 0.5)  # a mask
        v_columns = torch.randn(1, 2, 32, 30).transpose(2, 3)  # PyTorch's kernel wants rows
        assert torch.equal(hetero.attention(q, k, v_columns),
                           hetero.attention(q, k, v_columns, backend="torch"))
    assert out[0, 1].isnan().all() and not out[0, [0, 2, 3]].isnan().any()
    assert len(python_path_calls) == 7


def _masks(b, hq, sq, sk, dtype):
    gen = torch.Generator().manual_seed(sq * sk)
    padding = torch.rand(b, 1, 1, sk, generator=gen) > 0.3  # transformers' padded keys
    return {
        "padding": padding,
        "rows-blind": torch.zeros(sq, sk, dtype=torch.bool),
        "additive": torch.randn(hq, sq, sk, generator=gen).to(dtype),
        "additive-float32": torch.randn(b, hq, 1, sk, generator=gen),
        "additive-inf": torch.where(padding, 0.0, -math.inf).to(dtype),
    }


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize("mask", _masks(1, 1, 1, 1, torch.float32).keys())
@pytest.mark.parametrize("shape", [(2, 4, 2, 1, 23, 32, 32), (2, 4, 1, 7, 11, 16, 8)],
                         ids=["decode", "chunk"])
def test_masked_calls_are_served_natively(shape, mask, causal, dtype, python_path_calls):
    b, hq, _, sq, sk, _, _ = shape
    q, k, v = _qkv(*shape, dtype=dtype, seed=sq)
    attn_mask = _masks(b, hq, sq, sk, dtype)[mask]
    with hetero.use("cpu"):
        out = hetero.attention(q, k, v, causal=causal, attn_mask=attn_mask)
    assert python_path_calls == []
    want = check_against_oracle("attention", q, k, v, causal=causal, attn_mask=attn_mask,
                                backend="cpu")
    assert torch.equal(out, want)


def test_the_decision_is_dispatchs_and_cached_natively(python_path_calls):
    q, k, v = _qkv(1, 4, 2, 1, 30, 32, dtype=torch.bfloat16, seed=5)
    with hetero.use("reference"):  # a kernel written in Python: the Python path
        hetero.attention(q, k, v)
    assert len(python_path_calls) == 1
    with hetero.use("cpu"):
        before = route.decisions()
        hetero.attention(q, k, v)
        hetero.attention(q, k, v, causal=True)  # another key
        hetero.attention(*_qkv(1, 4, 2, 1, 31, 32, dtype=torch.bfloat16))  # the same bucket
        hetero.attention(q, k, v, attn_mask=torch.ones(30, dtype=torch.bool))  # a mask: another
        assert route.decisions() == before + 3 and len(python_path_calls) == 1
    dispatch.clear_cache()
    assert route.decisions() == 0


@pytest.mark.parametrize("kwargs", [
    {"out": torch.empty(1, 4, 1, 32)}, {"backend": "cpu"}, {"scale": 1},
    {"causal": torch.tensor(True).item()},
], ids=["out", "backend", "int-scale", "python-bool"])
def test_other_calls_take_the_python_path(kwargs, python_path_calls):
    q, k, v = _qkv(1, 4, 2, 1, 30, 32, seed=6)
    out = hetero.attention(q, k, v, **kwargs)
    served = len(python_path_calls)
    plain = {key: float(value) if key == "scale" else value for key, value in kwargs.items()
             if key in ("scale", "causal")}
    assert torch.equal(out, hetero.attention(q, k, v, **plain))
    assert served == (0 if "causal" in kwargs else 1)  # a bool from .item() is a bool


@pytest.mark.parametrize("which", ["q", "mask"])
def test_a_tensor_that_requires_grad_is_refused_as_before(which, python_path_calls):
    q, k, v = _qkv(1, 4, 2, 1, 30, 32, seed=7)
    mask = torch.zeros(30, requires_grad=which == "mask")
    with pytest.raises(RuntimeError, match="autograd"):
        hetero.attention(q.requires_grad_(which == "q"), k, v, attn_mask=mask)
    assert len(python_path_calls) == 1


def _bad(which):
    q, k, v = _qkv(2, 4, 2, 1, 12, 16, seed=8)
    if which == "q dims":
        q = q[0]
    elif which == "k dtype":
        k = k.double()
    elif which == "q dtype":
        q, k, v = q.long(), k.long(), v.long()
    elif which == "batch":
        k, v = k[:1], v[:1]
    elif which == "head dim":
        k = k[..., :8]
    elif which == "v length":
        v = v[:, :, :5]
    elif which == "heads":
        k, v = k[:, :1].expand(-1, 3, -1, -1), v[:, :1].expand(-1, 3, -1, -1)
    elif which == "empty head dim":
        q, k = q[..., :0], k[..., :0]
    elif which == "q":
        q = q.tolist()
    return q, k, v


@pytest.mark.parametrize("which,kwargs,error,match", [
    ("q dims", {}, ValueError, "q: expected 4 dims"),
    ("k dtype", {}, TypeError, "k"),
    ("q dtype", {}, TypeError, "q: dtype"),
    ("batch", {}, ValueError, "k, v: batch sizes"),
    ("head dim", {}, ValueError, "k: head dim"),
    ("v length", {}, ValueError, "v: heads and length"),
    ("heads", {}, ValueError, "key/value heads must divide"),
    ("empty head dim", {}, ValueError, "q: head dim"),
    ("q", {}, TypeError, "q: expected a torch.Tensor"),
    (None, {"attn_mask": torch.ones(12, dtype=torch.int32)}, TypeError, "attn_mask"),
    (None, {"attn_mask": torch.ones(2, 4, 1, 12, dtype=torch.float64)}, TypeError, "attn_mask"),
    (None, {"attn_mask": torch.ones(3, 1, 1, 12, dtype=torch.bool)}, ValueError, "attn_mask"),
    (None, {"attn_mask": torch.ones(1, 1, 1, 1, 12, dtype=torch.bool)}, ValueError,
     "attn_mask: expected at most 4 dims"),
    (None, {"attn_mask": [True] * 12}, TypeError, "attn_mask"),
    (None, {"causal": 1}, TypeError, "causal"),
    (None, {"scale": "0.1"}, TypeError, "scale"),
])
def test_bad_input_raises_the_named_errors(which, kwargs, error, match, python_path_calls):
    with pytest.raises(error, match=match):
        hetero.attention(*_bad(which), **kwargs)
    hetero.attention(*_bad(None))  # served natively: bad input pinned no decision
    assert len(python_path_calls) == 1


# ---------------------------------------------------------------- torch.ops.hetero.attention
@pytest.fixture
def python_kernel_calls(python_path_calls_of):
    """The calls that reached torch.ops.hetero.attention_forward's Python kernel."""
    return python_path_calls_of(torch_op, "_serve")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mask", [None, "padding", "additive"])
@pytest.mark.parametrize("shape", [SHAPES["decode"], SHAPES["prompt"], SHAPES["more-queries"]],
                         ids=["decode", "prompt", "more-queries"])
def test_the_torch_ops_cpu_flash_calls_run_natively_and_counted(shape, mask, dtype,
                                                                python_kernel_calls):
    b, hq, _, sq, sk, _, _ = shape
    q, k, v = _qkv(*shape, dtype=dtype, seed=sq + sk)
    attn_mask = None if mask is None else _masks(b, hq, sq, sk, dtype)[mask]
    hetero.reset_stats()
    with hetero.use("cpu"):
        out, lse = torch.ops.hetero.attention_forward(q, k, v, attn_mask, True, 0.3)
        assert python_kernel_calls == []
        want_out, want_lse = torch_op._serve(q, k, v, attn_mask, True, 0.3)  # the Python kernel
    assert torch.equal(out, want_out) and torch.equal(lse, want_lse)
    assert out.is_contiguous() and lse.is_contiguous() and lse.dtype == torch.float32
    (served,) = hetero.stats().served["attention"].items()
    assert served[0] == "cpu.flash" and served[1].calls == 2
    _, record = api.prepare(q, k, v, True, 0.3, attn_mask, None, None)
    assert served[1].flops == pytest.approx(2 * flops(record), rel=1e-9)


def test_the_torch_ops_gradients_come_through_the_native_forward(python_kernel_calls,
                                                                  monkeypatch):
    q, k, v = _qkv(1, 4, 2, 7, 11, 16, as_transformers=True, seed=3)
    grads = []
    for native in (True, False):
        if not native:
            monkeypatch.setattr(torch_op, "native_attention_op", None)
        leaves = [t.detach().requires_grad_() for t in (q, k, v)]
        with hetero.use("cpu"):
            torch.ops.hetero.attention(*leaves, None, True, None).square().sum().backward()
        grads.append([t.grad for t in leaves])
    assert len(python_kernel_calls) == 1  # the second pass only
    for native, python in zip(*grads):
        assert torch.equal(native, python)


def test_the_torch_ops_other_calls_take_its_python_kernel(python_kernel_calls):
    q, k, v = _qkv(1, 4, 2, 3, 30, 32, seed=1)
    with hetero.use("torch"):  # its log-sum-exp comes from the reference
        torch.ops.hetero.attention(q, k, v, None, True, None)
    torch.ops.hetero.attention(q.double(), k.double(), v.double(), None, True, None)
    hetero.counters.observers.append(lambda *args: None)
    try:
        torch.ops.hetero.attention(q, k, v, None, True, None)
    finally:
        hetero.counters.observers.pop()
    assert len(python_kernel_calls) == 3
    with pytest.raises(ValueError, match="k: head dim"):
        torch.ops.hetero.attention(q, k[..., :8], v, None, False, None)
