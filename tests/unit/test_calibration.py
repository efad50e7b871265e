"""Self-calibration: the first call of an unmeasured bucket times the kernels that can
serve it (PyTorch's own among them) and the tuned table keeps the fastest correct one,
on disk, for this machine's fingerprint only; explain() cites the measurement and
hetero.info() its cost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest

import hetero
from hetero import calibration, dispatch, fingerprint
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
