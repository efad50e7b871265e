"""hetero.enable(native=True): CPU GEMMs served behind PyTorch's aten::mm / aten::bmm
(python/hetero/native_route.py, csrc/route/): results against float64 on awkward shapes
and views, what serves and is counted, threads, autograd, torch.compile, bad input, and
that leaving restores PyTorch's kernels."""

from __future__ import annotations

import threading

import pytest
import torch
import torch.nn.functional as F

import hetero
from hetero import dispatch, native_route
from hetero.ops.gemm.checks import ROUTED_LAYOUTS, gemm_operands
from hetero.ops.gemm.numerics import gemm_error_bound
from hetero.testing import check_within, flash_rule_bound, poison_, randn

pytestmark = pytest.mark.skipif(native_route.unavailable() is not None,
                                reason=f"native route: {native_route.unavailable()}")
route = hetero._C.route if native_route.unavailable() is None else None


def _served(name="cpu.gemm"):
    return hetero.stats().served.get("gemm", {}).get(name, hetero.counters.Count()).calls


def _check(out, a, b):
    bound = gemm_error_bound(a, b, out_dtype=out.dtype)
    check_within(out, torch.matmul(a.double(), b.double()), bound)


SIZES = [(1, 64, 64), (0, 5, 3), (4, 0, 3), (4, 5, 0), (1, 1, 1), (7, 13, 11), (37, 130, 65)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", ROUTED_LAYOUTS)
@pytest.mark.parametrize("m,k,n", SIZES)
def test_mm_is_served_natively_within_the_bound(m, k, n, layout, dtype):
    a, b = gemm_operands(layout, m, n, k, dtype=dtype)
    with hetero.enabled(native=True):
        out = a @ b
    assert out.shape == (m, n) and out.dtype == dtype
    _check(out, a, b)
    assert _served() == 1


@pytest.mark.parametrize("batch,m,k,n", [(3, 5, 7, 4), (1, 1, 64, 64), (2, 0, 3, 4), (5, 17, 2, 31)])
def test_bmm_and_folded_matmul_are_served(batch, m, k, n):
    a, b = randn(batch, m, k, seed=3), randn(batch, k, n, seed=4)
    w = randn(n, k, seed=5)
    with hetero.enabled(native=True):
        out = torch.bmm(a, b)
        expanded = torch.bmm(a, b[:1].expand(b.shape))
        linear = F.linear(a, w)  # leading dims folded into one aten::mm
    _check(out, a, b)
    _check(expanded, a, b[:1].expand(b.shape))
    _check(linear.reshape(-1, n), a.reshape(-1, k), w.t())
    assert _served() == 3


def test_out_forms_write_into_the_given_tensor():
    a, b = randn(6, 5, seed=6), randn(5, 4, seed=7)
    out = poison_(torch.empty(6, 4))
    batched = poison_(torch.empty(2, 6, 4))
    with hetero.enabled(native=True):
        result = torch.mm(a, b, out=out)
        torch.bmm(a.expand(2, 6, 5), b.expand(2, 5, 4), out=batched)
        resized = torch.mm(a, b, out=torch.empty(0))  # PyTorch resizes it
    assert result.data_ptr() == out.data_ptr()
    for got in (out, batched[0], batched[1], resized):
        _check(got, a, b)
    assert _served() == 2  # the resized one ran on PyTorch's kernel


def test_k_zero_with_batch_dims_gives_zeros():
    with hetero.enabled(native=True):
        out = randn(2, 3, 0) @ randn(0, 4)
    assert torch.equal(out, torch.zeros(2, 3, 4))


def test_the_torch_backend_runs_pytorchs_kernel_and_is_counted_as_it():
    a, b = randn(9, 8, seed=8), randn(8, 7, seed=9)
    with hetero.use("torch"), hetero.enabled(native=True):
        out = a @ b
    assert torch.equal(out, torch.mm(a, b))
    assert _served("torch.matmul") == 1 and _served() == 0


def test_a_python_kernel_runs_through_hetero_route_run():
    a, b = randn(4, 3, seed=10), randn(3, 5, seed=11)
    with hetero.use("reference"), hetero.enabled(native=True):
        out = a @ b
    _check(out, a, b)
    assert _served("reference.torch") == 1


def test_a_fallback_is_counted_with_its_reason():
    a = torch.arange(6, dtype=torch.int64).reshape(2, 3)
    with hetero.enabled(native=True):
        out = a @ a.t()
    assert torch.equal(out, torch.mm(a, a.t()))
    assert hetero.stats().fallbacks["gemm"] == {
        "mm: dtype int64 is not served": hetero.counters.Count(1, 2 * 2 * 2 * 3)}


def test_a_dispatch_error_surfaces_with_its_message():
    with hetero.use("cpu", policy="error"), hetero.enabled(native=True):
        with pytest.raises(RuntimeError, match="DispatchError"):
            randn(2, 3, dtype=torch.float64) @ randn(3, 2, dtype=torch.float64)


def test_scopes_and_cache_clears_change_the_decision():
    a, b = randn(5, 5, seed=12), randn(5, 5, seed=13)
    with hetero.enabled(native=True):
        a @ b
        with hetero.use("torch"):
            a @ b
        a @ b
        assert route.decisions() == 2
        dispatch.clear_cache()
        assert route.decisions() == 0
    assert _served() == 2 and _served("torch.matmul") == 1


def test_bad_input_raises_pytorchs_errors():
    int8, fp8, one = torch.int8, torch.float8_e4m3fn, torch.tensor(1.0)
    cases = [lambda: torch.mm(randn(2, 3), randn(4, 5)),
             lambda: torch.mm(randn(2, 3), randn(3, 5, dtype=torch.float64)),
             lambda: torch.bmm(randn(2, 3, 4), randn(3, 4, 5)),
             lambda: torch.mm(randn(3), randn(3, 2)),
             lambda: torch.mm(randn(2, 3), "b"),
             lambda: torch._int_mm(torch.zeros(3, dtype=int8), torch.zeros(3, 4, dtype=int8)),
             lambda: torch._int_mm(torch.zeros(17, 3, dtype=int8), torch.zeros(4, 8, dtype=int8)),
             lambda: torch._int_mm(torch.zeros(17, 32, dtype=int8), torch.zeros(32, 8)),
             lambda: torch._scaled_mm(torch.zeros(16, 32).to(fp8), torch.zeros(16, 32).to(fp8),
                                      one, one, out_dtype=torch.bfloat16)]
    for case in cases:
        with pytest.raises((RuntimeError, TypeError)) as plain:
            case()
        with hetero.enabled(native=True), pytest.raises(type(plain.value)) as routed:
            case()
        assert str(routed.value).endswith(str(plain.value))  # a Python run op names its type
    assert _served() == 0


def test_other_threads_and_leaving_restore_pytorch():
    a, b = randn(8, 8, seed=14), randn(8, 8, seed=15)
    seen = []
    with hetero.enabled(native=True):
        with hetero.enabled(native=True):  # nests
            assert route.installs() == 2
        worker = threading.Thread(target=lambda: seen.append(torch.mm(a, b)))
        worker.start()
        worker.join()
        assert hetero.is_enabled() and route.installs() == 1
    assert torch.equal(seen[0], torch.mm(a, b)) and _served() == 0
    assert not hetero.is_enabled() and route.installs() == 0
    hetero.enable(native=True)
    hetero.enable(native=True, ops="gemm", devices="cpu")  # again: changes what is routed
    a @ b
    hetero.disable()
    a @ b
    assert route.installs() == 0 and _served() == 1


def test_gradients_match_and_the_backward_gemms_are_served():
    x, w = randn(4, 6, seed=16).requires_grad_(), randn(5, 6, seed=17).requires_grad_()
    grad = randn(4, 5, seed=18)
    F.linear(x, w).backward(grad)
    expected = x.grad.clone(), w.grad.clone()
    x.grad = w.grad = None
    with hetero.enabled(native=True):
        F.linear(x, w).backward(grad)
    _check(x.grad, grad, w.detach())
    _check(w.grad, grad.t(), x.detach())
    torch.testing.assert_close(x.grad, expected[0])
    torch.testing.assert_close(w.grad, expected[1])
    assert _served() == 3


def test_compiled_code_is_served_at_run_time():
    w = randn(16, 32, seed=19)
    compiled = torch.compile(lambda x: F.linear(x, w).relu(), backend="inductor")
    x = randn(3, 32, seed=20)
    with hetero.enabled(native=True):
        out = compiled(x)
    check_within(out, (x.double() @ w.double().t()).relu(),
                 gemm_error_bound(x, w.t(), out_dtype=torch.float32))
    assert _served() == 1


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="ops: the native route serves"):
        hetero.enable(native=True, ops=["gemm", "varlen_attention"])
    with pytest.raises(ValueError, match="devices: the native route serves 'cpu' only"):
        hetero.enable(native=True, devices="cuda")
    with hetero.enabled(native=False):
        with pytest.raises(RuntimeError, match="function mode"):
            hetero.enable(native=True)
    with hetero.enabled(native=True):
        with pytest.raises(RuntimeError, match="routes natively"):
            hetero.enable(native=False)
        with pytest.raises(RuntimeError, match="ends it on exit"):
            hetero.disable()


def test_the_default_on_cpu_is_the_native_route():
    with hetero.enabled():
        assert native_route.active()
    with hetero.enabled(ops="varlen_attention"):  # an op it does not serve: the function mode
        assert not native_route.active() and hetero.is_enabled()
    with hetero.enabled(devices="cuda"):
        assert not native_route.active()


# ---------------------------------------------------------------- attention
def _attention_served(op="attention", name="cpu.flash"):
    return hetero.stats().served.get(op, {}).get(name, hetero.counters.Count()).calls


def _sdpa(q, k, v, **kw):
    return F.scaled_dot_product_attention(q, k, v, enable_gqa=k.shape[1] != q.shape[1], **kw)


def _check_attention(out, q, k, v, **kw):
    """Within twice PyTorch's own error in the same dtype (plus a floor) of float64."""
    exact = _sdpa(q.double(), k.double(), v.double(),
                  **{n: (t.double() if isinstance(t, torch.Tensor) and t.is_floating_point()
                         else t) for n, t in kw.items()})
    with torch_ops_unrouted():
        baseline = _sdpa(q, k, v, **kw)
    check_within(out, exact, flash_rule_bound(exact, baseline))


def torch_ops_unrouted():
    from hetero.torch_ops import unrouted
    return unrouted()


ATTENTION = {  # name: (B, Hq, Hkv, Sq, Sk, D, Dv, keywords)
    "decode": (1, 4, 4, 1, 16, 32, 32, {}),
    "causal prefill, primes": (2, 3, 3, 13, 13, 16, 16, {"is_causal": True}),
    "GQA": (1, 4, 2, 7, 19, 32, 32, {}),
    "bool mask, broadcast": (2, 2, 2, 5, 11, 16, 16, {"attn_mask": "bool"}),
    "additive mask per batch, scale": (2, 2, 2, 6, 9, 8, 8, {"attn_mask": "add", "scale": 0.3}),
    "one key": (1, 1, 1, 3, 1, 8, 8, {}),
}


def _attention_inputs(name, dtype=torch.float32, grad=False):
    B, Hq, Hkv, Sq, Sk, D, Dv, kw = ATTENTION[name]
    q, k, v = (randn(B, Hq, Sq, D, dtype=dtype, seed=21), randn(B, Hkv, Sk, D, dtype=dtype, seed=22),
               randn(B, Hkv, Sk, Dv, dtype=dtype, seed=23))
    kw = dict(kw)
    if kw.get("attn_mask") == "bool":
        kw["attn_mask"] = torch.rand(Sq, Sk, generator=torch.Generator().manual_seed(24)) > 0.3
        kw["attn_mask"][:, 0] = True  # every query sees a key
    elif kw.get("attn_mask") == "add":
        kw["attn_mask"] = randn(B, 1, Sq, Sk, dtype=dtype, seed=25)
    if grad:
        q, k, v = (t.requires_grad_() for t in (q, k, v))
    return q, k, v, kw


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", list(ATTENTION))
def test_sdpa_is_served_natively_within_the_flash_rule(name, dtype):
    q, k, v, kw = _attention_inputs(name, dtype)
    with hetero.enabled(native=True):
        out = _sdpa(q, k, v, **kw)
    assert out.shape == (*q.shape[:3], v.shape[3]) and out.dtype == dtype
    _check_attention(out, q, k, v, **kw)
    assert _attention_served() == 1


@pytest.mark.parametrize("name", ["causal prefill, primes", "GQA",
                                  "additive mask per batch, scale"])
def test_sdpa_gradients_within_the_flash_rule_and_served(name):
    q, k, v, kw = _attention_inputs(name, grad=True)
    grad = randn(*q.shape[:3], v.shape[3], seed=26)
    exact = [t.double().detach().requires_grad_() for t in (q, k, v)]
    mask64 = {n: (t.double() if isinstance(t, torch.Tensor) else t) for n, t in kw.items()}
    _sdpa(*exact, **mask64).backward(grad.double())
    _sdpa(q, k, v, **kw).backward(grad)
    baseline = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    with hetero.enabled(native=True):
        _sdpa(q, k, v, **kw).backward(grad)
    for got, want, base in zip((q.grad, k.grad, v.grad), exact, baseline):
        check_within(got, want.grad, flash_rule_bound(want.grad, base))
    assert _attention_served() == 1 and _attention_served("attention_backward") == 1


def test_sdpa_the_torch_backend_and_what_stays_with_pytorch():
    q, k, v, _ = _attention_inputs("GQA")
    with hetero.use("torch"), hetero.enabled(native=True):
        out = _sdpa(q, k, v)
    assert torch.equal(out, _sdpa(q, k, v))
    assert _attention_served("attention", "torch.sdpa") == 1
    with hetero.enabled(native=True):
        top_left = _sdpa(q, k, v, is_causal=True)  # Sq != Sk: PyTorch's alignment
    assert torch.equal(top_left, _sdpa(q, k, v, is_causal=True))
    assert set(hetero.stats().fallbacks["attention"]) == {
        "scaled_dot_product_attention: is_causal with Sq != Sk (PyTorch aligns it top-left)"}
    with hetero.enabled(native=True, ops="gemm"):  # attention not routed at all
        _sdpa(q, k, v)
    assert _attention_served() == 0 and sum(
        c.calls for c in hetero.stats().fallbacks["attention"].values()) == 1


def test_sdpa_on_pytorchs_math_path_has_its_gemms_routed():
    q, k, v = randn(1, 2, 5, 16, seed=27), randn(1, 2, 9, 16, seed=28), randn(1, 2, 9, 8, seed=29)
    with hetero.enabled(native=True):  # Dv != D: PyTorch runs its math path, not flash
        out = _sdpa(q, k, v)
    _check_attention(out, q, k, v)
    assert _attention_served() == 0 and _served() == 2


@pytest.mark.parametrize("layout", ["BHSD", "BSHD (transposed views)"])
def test_sdpa_outputs_and_gradients_are_laid_out_as_pytorchs(layout):
    """torch.compile checks them against PyTorch's meta function: dense in q's dim order."""
    def make(seed):
        t = randn(2, 7, 3, 16, seed=seed)
        return (t.transpose(1, 2) if layout.startswith("BSHD") else t.transpose(1, 2).contiguous())
    q, k, v = (make(s).requires_grad_() for s in (30, 31, 32))
    plain = _sdpa(q, k, v, is_causal=True)
    plain_grads = torch.autograd.grad(plain, (q, k, v), torch.ones_like(plain))
    with hetero.enabled(native=True):
        ours = _sdpa(q, k, v, is_causal=True)
        grads = torch.autograd.grad(ours, (q, k, v), torch.ones_like(ours))
    assert ours.stride() == plain.stride()
    assert [g.stride() for g in grads] == [g.stride() for g in plain_grads]
    assert _attention_served() == 1 and _attention_served("attention_backward") == 1


def test_threads_routing_at_once_share_decisions_and_counts():
    a, b = randn(16, 24, seed=33), randn(24, 8, seed=34)
    want = torch.mm(a, b)
    results, errors = [], []

    def work(shift):
        try:
            with hetero.enabled(native=True):
                for i in range(50):
                    got = torch.mm(a, b) if i % 2 else a @ b
                    results.append((got - want).abs().max().item() < 1e-4)
                    torch.mm(randn(3 + shift, 24, seed=i), b)  # misses decided meanwhile
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and all(results) and len(results) == 150
    assert _served() == 300 and route.installs() == 0


def test_a_bool_mask_passed_to_the_flash_operator_itself_is_read_as_bool():
    """F.scaled_dot_product_attention turns bool masks additive first; a direct call of
    PyTorch's CPU flash operator may still pass one."""
    q, k, v = randn(1, 2, 5, 16, seed=35), randn(1, 2, 7, 16, seed=36), randn(1, 2, 7, 16, seed=37)
    mask = torch.rand(5, 7, generator=torch.Generator().manual_seed(38)) > 0.4
    mask[:, 0] = True
    with hetero.enabled(native=True):
        out, _ = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, attn_mask=mask)
    _check_attention(out, q, k, v, attn_mask=mask)
    assert _attention_served() == 1


def test_serving_times_a_candidate_as_routed_uncounted_and_restores_the_thread():
    a, b = randn(9, 7, seed=30), randn(7, 5, seed=31)
    installs = route.installs()
    with native_route.serving("gemm") as as_served:
        on_cpu = as_served(lambda: torch.mm(a, b), "cpu")
        on_torch = as_served(lambda: torch.mm(a, b), "torch")
        assert as_served(lambda: None, "reference") is not None  # gemm: Python kernels too
        assert torch.equal(on_cpu(), hetero.gemm(a, b, backend="cpu"))
        assert torch.equal(on_torch(), torch.mm(a, b))
        assert torch.equal(torch.mm(a, b), on_torch())  # this thread does not route
    with native_route.serving("attention") as as_served:
        assert as_served(lambda: None, "reference") is None  # served by PyTorch instead
    assert route.installs() == installs and not native_route.active()
    assert hetero.stats().served == {}


def test_decode_attention_is_decided_once_per_length_bucket(monkeypatch):
    q, results = randn(1, 4, 1, 32, seed=40), []

    def decode(lengths):
        for length in lengths:
            k, v = randn(1, 2, length, 32, seed=41), randn(1, 2, length, 32, seed=42)
            results.append((F.scaled_dot_product_attention(q, k, v, enable_gqa=True), k, v))

    with hetero.use("cpu"), hetero.enabled(native=True):
        decode(range(17, 33))  # one bucket of key lengths: one decision
        assert route.decisions() == 1
        decode([33, 40])  # the next bucket
        assert route.decisions() == 2
        dispatch.clear_cache()
        monkeypatch.setitem(dispatch.wants_sizes, "attention", True)  # a kernel limits sizes
        decode([17, 18, 19])
        assert route.decisions() == 3
    assert hetero.stats().served["attention"]["cpu.flash"].calls == len(results) == 21
    for out, k, v in results:
        _check_attention(out, q, k, v)


def test_gemm_sizes_within_a_bucket_share_a_decision():
    w = randn(48, 40, seed=43)
    with hetero.enabled(native=True):
        outs = [(x, F.linear(x, w)) for x in (randn(m, 40, seed=m) for m in range(17, 33))]
        assert route.decisions() == 1  # M in (16, 32]: one bucket
        F.linear(randn(33, 40, seed=44), w)
        assert route.decisions() == 2
    for x, out in outs:
        _check(out, x, w.t())
    assert _served() == 17
