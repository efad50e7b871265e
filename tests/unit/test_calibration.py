"""Self-calibration: the first call of an unmeasured bucket times the kernels that can
serve it (PyTorch's own among them) and the tuned table keeps the fastest correct one,
on disk, for this machine's fingerprint only; explain() cites the measurement and
hetero.info() its cost. Training calls of attention are decided by forward and backward
timed together."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import hetero
from hetero import calibration, dispatch, fingerprint, native_route, registry
from hetero.bench import runner
from hetero.ops.gemm import api as gemm_api
from hetero.testing import randn


@pytest.fixture
def calibrating(hetero_env, tmp_path):
    """Calibration on, into a table file of this test's own; returns its path."""
    path = tmp_path / "tuned.json"
    hetero_env(HETERO_TUNED=str(path), HETERO_CALIBRATE="on")
    assert dispatch.calibrating()
    return path


def _operands():
    return randn(48, 96, seed=1), randn(96, 64, seed=2)


def test_a_correct_but_slow_backend_loses_and_a_wrong_one_is_never_kept(
        calibrating, bench_backends):
    before = calibration.cost()
    a, b = _operands()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hetero.HeteroFallbackWarning)
        out = hetero.gemm(a, b)  # sleepy ranks first in the default order, measured last
    torch_out = (a.double() @ b.double()).float()
    assert (out - torch_out).abs().max() < 1e-4
    decision = hetero.explain("gemm", a, b)
    assert decision.tuned_choice and decision.chosen.qualname in ("cpu.gemm", "torch.matmul")
    assert decision.chosen.qualname == decision.tuned.kernel
    text = str(decision)
    assert f"tuned table {calibrating}: {decision.chosen.qualname} fastest correct" in text
    assert " ms against " in text and "(used)" in text
    spent = calibration.cost()
    assert spent.buckets == before.buckets + 1 and spent.seconds > before.seconds
    assert hetero.info()["calibration"]["buckets"] == spent.buckets
    saved = json.loads(calibrating.read_text())
    assert saved["fingerprint"] == fingerprint.current()
    (entry,) = saved["entries"]
    assert entry["kernel"] == decision.chosen.qualname and entry["bucket"] == [64, 64, 128, 0]
    assert entry["kernel"] not in ("sleepy.k", "fastwrong.k")
    hetero.gemm(a, b)  # measured once per bucket
    assert calibration.cost().buckets == spent.buckets


def test_the_table_survives_a_restart(calibrating):
    a, b = _operands()
    hetero.gemm(a, b)
    code = ("import hetero, torch; from hetero import calibration; "
            "a, b = torch.randn(48, 96), torch.randn(96, 64); hetero.gemm(a, b); "
            "d = hetero.explain('gemm', a, b); "
            "print(d.tuned_choice, d.chosen.qualname, calibration.cost().buckets)")
    env = {**os.environ, "HETERO_TUNED": str(calibrating), "HETERO_CALIBRATE": "on"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, check=True)
    used, kernel, measured = result.stdout.split()
    assert used == "True" and measured == "0"  # dispatched from the file, nothing measured
    assert kernel == hetero.explain("gemm", a, b).chosen.qualname


def test_another_fingerprint_is_ignored_with_the_reason(calibrating, hetero_env):
    a, b = _operands()
    hetero.gemm(a, b)
    saved = json.loads(calibrating.read_text())
    saved["fingerprint"] = dict(saved["fingerprint"], cpu="Some Other CPU")
    calibrating.write_text(json.dumps(saved))
    with pytest.warns(hetero.HeteroConfigWarning, match="measured on another machine or "
                                                        "build: cpu 'Some Other CPU' here"):
        hetero_env(HETERO_TUNED=str(calibrating), HETERO_CALIBRATE="off")
    assert "Some Other CPU" in hetero.info()["tuned_table_ignored"]
    decision = hetero.explain("gemm", a, b)
    assert not decision.tuned_choice and decision.chosen.qualname == "cpu.gemm"
    assert "not used (measured on another machine" in str(decision)


def test_off_means_no_measurement(hetero_env, tmp_path):
    hetero_env(HETERO_TUNED=str(tmp_path / "t.json"), HETERO_CALIBRATE="off")
    assert dispatch.tuned_table() is None and not dispatch.calibrating()
    before = calibration.cost().buckets
    hetero.gemm(*_operands())
    assert calibration.cost().buckets == before and not (tmp_path / "t.json").exists()


def test_named_backends_and_single_candidates_are_not_measured(calibrating):
    before = calibration.cost().buckets
    a, b = _operands()
    hetero.gemm(a, b, backend="cpu")  # a named backend is obeyed
    hetero.gemm(a.double(), b.double())  # only torch.matmul serves float64 (+ the oracle)
    assert calibration.cost().buckets == before
    assert "the first call measures it" in str(hetero.explain("gemm", a, b))


class _SlowBackward(hetero.Backend):
    """attention with the cpu backend's (fast) forward and a correct backward that
    sleeps 50 ms: the fastest at inference, never at training."""

    name, device_type, priority, api_version = "slowgrad", "cpu", 1000, "2.0"

    def kernels(self):
        from hetero.backends import cpu

        (flash,) = [k for k in cpu.backend.kernels() if k.op == "attention"]

        def backward(args, dout):
            time.sleep(0.05)
            return flash.backward(args, dout)

        return [hetero.Kernel("attention", "k", flash.fn, flash.support, backward=backward)]


def test_training_steps_are_decided_by_forward_and_backward_together(calibrating,
                                                                     monkeypatch):
    timed = []
    measure_training = calibration._measure_training
    monkeypatch.setattr(calibration, "_measure_training", lambda spec, case, traits, kernels: (
        timed.extend(k.qualname for k in kernels),
        measure_training(spec, case, traits, kernels))[1])
    registry.register(_SlowBackward())
    try:
        q, k, v = (randn(1, 2, 64, 32, seed=s) for s in (1, 2, 3))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", hetero.HeteroFallbackWarning)
            with hetero.enabled("attention", native=False):  # the function mode decides training calls whole
                F.scaled_dot_product_attention(q, k, v, is_causal=True)  # inference
                leaves = [t.clone().requires_grad_() for t in (q, k, v)]
                out = F.scaled_dot_product_attention(*leaves, is_causal=True)  # training
                out.backward(torch.ones_like(out))
        entries = {e["op"]: e for e in json.loads(calibrating.read_text())["entries"]}
        assert set(entries) == {"attention", "attention+backward"}
        assert entries["attention"]["bucket"] == entries["attention+backward"]["bucket"]
        assert entries["attention+backward"]["kernel"] != "slowgrad.k"
        assert entries["attention+backward"]["median_s"] < 0.05
        assert "slowgrad.k" in timed and "torch.sdpa" in timed
        want = torch.func.grad(lambda q: F.scaled_dot_product_attention(
            q.double(), k.double(), v.double(), is_causal=True).sum())(q)
        assert (leaves[0].grad.double() - want).abs().max() < 1e-4
    finally:
        registry.unregister("slowgrad")
        dispatch.clear_cache()


def test_calls_the_native_route_serves_are_measured_as_it_serves_them(calibrating,
                                                                      monkeypatch,
                                                                      python_path_calls_of):
    if native_route.unavailable() is not None:
        pytest.skip(f"native route: {native_route.unavailable()}")
    timed = []  # what each candidate's timed call returned, per measurement
    python_path, on_python_path = python_path_calls_of(gemm_api), []
    measure_case = runner.measure_case
    x, w = randn(3, 96, seed=1), randn(64, 96, seed=2)
    work = SimpleNamespace(torch_call=lambda: "routed torch call", args=(x, w.t()), kwargs={})

    def spying(*args, timed_as=None, **kwargs):
        before = len(python_path)
        timed.append({name: timed_as(work, name)() for name in ("cpu", "torch")})
        on_python_path.append(len(python_path) - before)
        return measure_case(*args, timed_as=timed_as, **kwargs)

    monkeypatch.setattr(runner, "measure_case", spying)
    with hetero.enabled(native=True):
        out = F.linear(x, w)  # an unmeasured bucket: measured on routed torch.matmul calls
    assert timed == [{"cpu": "routed torch call", "torch": "routed torch call"}]
    assert calibration.cost().failed == []
    assert (out.double() - x.double() @ w.double().t()).abs().max() < 1e-4
    (entry,) = json.loads(calibrating.read_text())["entries"]
    assert entry["op"] == "gemm@native" and entry["bucket"] == [4, 64, 128, 1]
    assert entry["kernel"] in ("cpu.gemm", "torch.matmul") and entry["runner_up"]
    served = hetero.stats().served["gemm"]
    assert sum(c.calls for c in served.values()) == 1  # the timing calls are not counted
    with hetero.enabled(native=False):  # the function mode: measured as hetero.gemm(x, w.t())
        F.linear(x, w)                  # is served, on its native entry
    assert len(timed) == 2 and on_python_path == [0, 0]
    for result in timed[1].values():
        assert (result.double() - x.double() @ w.double().t()).abs().max() < 1e-4
    ops = sorted(e["op"] for e in json.loads(calibrating.read_text())["entries"])
    assert ops == ["gemm", "gemm@native"]


def test_the_native_route_measures_training_steps_too(calibrating):
    if native_route.unavailable() is not None:
        pytest.skip(f"native route: {native_route.unavailable()}")
    leaves = [randn(1, 2, 64, 32, seed=s).requires_grad_() for s in (1, 2, 3)]
    with hetero.enabled(native=True):  # the backward is decided inside autograd's pass
        F.scaled_dot_product_attention(*leaves, is_causal=True).sum().backward()
    assert calibration.cost().failed == []
    ops = {e["op"] for e in json.loads(calibrating.read_text())["entries"]}
    assert "attention+backward" in ops and "attention@native" in ops
    assert hetero.stats().served["attention_backward"]
