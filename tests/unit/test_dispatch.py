"""Dispatch: priority order, scopes, environment, fallback policy, explain(), caching."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
import torch

import hetero
from hetero import dispatch, registry
from hetero.testing import randn


class Counting(hetero.Backend):
    """An opt-in CPU backend that records which kernel ran."""

    device_type = "cpu"
    default = False
    api_version = "2.0"

    def __init__(self, name, dtypes=(torch.float32,), unavailable=()):
        self.name, self.calls, self._unavailable = name, [], list(unavailable)
        self._dtypes = frozenset(dtypes)

    def probe(self):
        return self._unavailable

    def kernels(self):
        def run(args):
            self.calls.append(args.out.shape)
            args.out.copy_(hetero.reference_gemm(args.a, args.b, args.bias, args.alpha,
                                                 args.beta).to(args.out.dtype))
        return [hetero.Kernel("gemm", "k", run, hetero.Support(
            dtypes=self._dtypes, device_types=frozenset({"cpu"}),
            features=frozenset({"bias", "batch"})))]


@pytest.fixture
def backends():
    made = {name: Counting(name) for name in ("first", "second")}
    made["down"] = Counting("down", unavailable=["device not present"])
    for b in made.values():
        hetero.register_backend(b)
    yield made
    for name in made:
        hetero.unregister_backend(name)


def ab(dtype=torch.float32):
    return randn(4, 3, dtype=dtype, seed=1), randn(3, 5, dtype=dtype, seed=2)


def test_default_order_prefers_native_cpu_then_pytorch_then_reference():
    assert dispatch.default_order("cpu") == ["cpu", "torch", "reference"]
    decision = hetero.explain("gemm", *ab())
    assert decision.chosen.qualname == "cpu.gemm"
    assert not decision.fallback


def test_priority_per_call_over_scope_over_env(backends, hetero_env):
    hetero_env(HETERO_BACKENDS="first")
    hetero.gemm(*ab())
    assert len(backends["first"].calls) == 1
    with hetero.use("second"):
        hetero.gemm(*ab())
        assert len(backends["second"].calls) == 1
        hetero.gemm(*ab(), backend="first")
        assert len(backends["first"].calls) == 2
    hetero.gemm(*ab())  # scope left: the environment's choice again
    assert len(backends["first"].calls) == 3 and len(backends["second"].calls) == 1


def test_nested_scopes_inherit_and_restore(backends):
    with hetero.use("first"):
        with hetero.use(policy="error"):
            assert dispatch.current_scope.get() == dispatch.Scope(("first",), "error")
            hetero.gemm(*ab())
        assert dispatch.current_scope.get() == dispatch.Scope(("first",), None)
    assert dispatch.current_scope.get() is None
    assert len(backends["first"].calls) == 1


def test_scope_is_context_local(backends):
    seen = []
    with hetero.use("first"):
        thread = threading.Thread(target=lambda: seen.append(hetero.explain("gemm", *ab())))
        thread.start()
        thread.join()
    assert seen[0].chosen.qualname == "cpu.gemm"


def test_explicit_backend_that_cannot_serve_raises_with_reasons():
    a, b = ab(torch.float64)
    with pytest.raises(hetero.DispatchError, match=r"dtype float64 not in") as info:
        hetero.gemm(a, b, backend="cpu")
    assert [c.backend for c in info.value.decision.candidates] == ["cpu"]
    with hetero.use("cpu"), pytest.raises(hetero.DispatchError):
        hetero.gemm(a, b)


def test_star_expands_to_default_order_and_fallback_warns_once():
    a, b = ab(torch.float64)
    with hetero.use("cpu", "*"):
        with pytest.warns(hetero.HeteroFallbackWarning, match=r"runs on torch.matmul "
                          r"because cpu.gemm: dtype float64"):
            out = hetero.gemm(a, b)
        torch.testing.assert_close(out, a @ b)
        with warnings_as_errors():
            hetero.gemm(a, b)  # same reason: no second warning


def test_unavailable_backend_is_skipped_with_its_probe_reason(backends):
    decision = hetero.explain("gemm", *ab(), backend=["down", "first"])
    assert decision.chosen.qualname == "first.k"
    assert decision.candidates[0].reasons == ["unavailable: device not present"]
    assert decision.fallback


def test_strict_environment_turns_fallback_into_error(hetero_env):
    hetero_env(HETERO_STRICT="1")
    assert hetero.fallback_policy() == "error"
    with pytest.raises(hetero.FallbackError, match="dtype float64"):
        hetero.gemm(*ab(torch.float64))
    hetero.gemm(*ab())  # no fallback, no error


def test_silent_policy_does_not_warn():
    with hetero.use(policy="silent"), warnings_as_errors():
        hetero.gemm(*ab(torch.float64))


def test_policy_change_invalidates_cached_decision():
    a, b = ab(torch.float64)
    with pytest.warns(hetero.HeteroFallbackWarning):
        hetero.gemm(a, b)
    assert dispatch.cache_size() >= 1
    hetero.set_fallback_policy("error")
    with pytest.raises(hetero.FallbackError):
        hetero.gemm(a, b)
    hetero.set_fallback_policy(None)
    with pytest.warns(hetero.HeteroFallbackWarning):
        hetero.gemm(a, b)


def test_registry_change_invalidates_cached_decision(hetero_env):
    hetero_env(HETERO_BACKENDS="late,*")
    with pytest.warns(hetero.HeteroFallbackWarning, match="no backend named 'late'"):
        hetero.gemm(*ab())
    late = Counting("late")
    hetero.register_backend(late)
    try:
        hetero.gemm(*ab())
        assert len(late.calls) == 1
    finally:
        hetero.unregister_backend("late")


def test_cache_key_distinguishes_dtype_and_features():
    dispatch.clear_cache()
    a, b = ab()
    hetero.gemm(a, b)
    hetero.gemm(a, b)
    assert dispatch.cache_size() == 1
    hetero.gemm(a, b, bias=randn(5, seed=3))
    hetero.gemm(*ab(torch.bfloat16))
    assert dispatch.cache_size() == 3


def test_explain_lists_every_candidate_with_reasons():
    q = randn(1, 2, 3, 300, dtype=torch.float32)  # head dim beyond the cpu kernel's 256
    decision = hetero.explain(hetero.attention, q, q, q, causal=True)
    assert decision.chosen.qualname == "torch.sdpa"
    assert [(c.label, c.reasons) for c in decision.candidates] == [
        ("cpu.flash", ["head dim 300 outside [1, 256]", "value head dim 300 outside [1, 256]"]),
        ("torch.sdpa", []), ("reference.torch", [])]
    text = str(decision)
    assert "causal=True" in text and "cpu.flash: head dim 300 outside [1, 256]" in text
    with pytest.raises(ValueError, match="op: expected one of"):
        hetero.explain("conv", q)


def test_explain_names_opt_in_backends_that_could_serve_the_call(backends):
    text = str(hetero.explain("gemm", *ab()))
    assert "opt-in backends that could also run it, when asked for by name: " in text
    assert "first (backend='first')" in text and "second (backend='second')" in text
    decision = hetero.explain("gemm", *ab())
    assert "down" not in decision.opt_in  # unavailable here
    assert "first" not in hetero.explain("gemm", *ab(torch.bfloat16)).opt_in  # fp32 only
    assert hetero.explain("gemm", *ab(), backend="cpu").opt_in == []  # a name was given


def test_unknown_backend_name_in_use_is_an_error():
    with pytest.raises(ValueError, match=r"no backend named 'cpuu' is installed \(installed: "
                                         r"ascend_sim, cpu, cuda, cuda_emulated, mlu_sim, "
                                         r"reference"):
        with hetero.use("cpuu"):
            pass


def test_unknown_and_malformed_environment_variables_are_reported(hetero_env):
    with pytest.warns(hetero.HeteroConfigWarning, match="HETERO_BACKEND .*did you mean "
                                                       "HETERO_BACKENDS"):
        hetero_env(HETERO_BACKEND="cpu")
    with pytest.warns(hetero.HeteroConfigWarning, match="HETERO_FALLBACK='loud'"):
        hetero_env(HETERO_FALLBACK="loud")
    assert hetero.fallback_policy() == "warn"


def test_environment_is_read_at_startup():
    code = ("import hetero, torch; "
            "print(hetero.explain('gemm', torch.ones(2, 2), torch.ones(2, 2)).chosen.qualname)")
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("HETERO_")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**env, "HETERO_BACKENDS": "reference"}, check=True)
    assert result.stdout.strip() == "reference.torch"


def test_third_party_backend_from_entry_point_is_found_and_used(plugin_site):
    entry = registry.get("toy")
    assert entry is not None and entry.source == "hetero-toy-backend 0.1.0"
    assert "toy" not in dispatch.default_order("cpu")  # opt-in
    import hetero_toy_backend

    a, b = ab()
    out = hetero.gemm(a, b, backend="toy")
    assert hetero_toy_backend.calls == [(4, 5)]
    torch.testing.assert_close(out, a @ b)
    assert hetero.explain("gemm", a, b, backend="toy").chosen.qualname == "toy.matmul"


def test_backend_that_fails_to_load_is_reported_not_fatal():
    path = str(__import__("pathlib").Path(__file__).parents[1] / "fixtures/broken_plugin_site")
    sys.path.insert(0, path)
    try:
        with pytest.warns(hetero.HeteroConfigWarning, match="'broken' failed to load"):
            registry.rediscover()
            registry.entries()
        reasons = registry.get("broken").reasons_unavailable()
        assert "ModuleNotFoundError" in reasons[0]
        decision = hetero.explain("gemm", *ab(), backend="broken")
        assert decision.chosen is None and "ModuleNotFoundError" in str(decision)
    finally:
        sys.path.remove(path)
        registry.rediscover()


def warnings_as_errors():
    import warnings

    class _Ctx(warnings.catch_warnings):
        def __enter__(self):
            super().__enter__()
            warnings.simplefilter("error")
    return _Ctx()
