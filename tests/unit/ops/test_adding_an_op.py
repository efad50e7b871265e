"""Adding an op takes no edit of hetero's package: RMSNorm, defined in
tests/fixtures/rms_norm_op.py through the public API alone (an OpSpec, and a backend
serving it), is listed, explained, dispatched under the fallback policy, judged by the
conformance suite from its own cases, and benchmarked against PyTorch."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import hetero
from hetero.cli import main
from hetero.testing import check_within, randn

FIXTURES = Path(__file__).parents[2] / "fixtures"


@pytest.fixture
def rms_norm():
    """The op and its ``rows`` backend, registered for one test."""
    sys.path.insert(0, str(FIXTURES))
    import rms_norm_op

    hetero.register_op(rms_norm_op.SPEC)
    hetero.register_backend(rms_norm_op.backend)
    yield rms_norm_op
    hetero.unregister_backend("rows")
    hetero.unregister_op("rms_norm")
    sys.path.remove(str(FIXTURES))


def test_listed_with_its_kernels(rms_norm):
    assert hetero.list_ops() == ["gemm", "attention", "scaled_gemm", "varlen_attention",
                                 "paged_attention", "rms_norm"]
    listed = {op["name"]: op for op in hetero.info()["ops"]}["rms_norm"]
    assert listed["kernels"] == ["reference.torch", "rows.rows"]  # the oracle serves it too


def test_dispatch_explain_and_fallback_policy(rms_norm):
    x, w = randn(5, 96, seed=1), randn(96, seed=2)
    with hetero.use("rows", "*"):
        decision = hetero.explain("rms_norm", x, w)
        assert decision.chosen.qualname == "rows.rows" and not decision.fallback
        out = rms_norm.rms_norm(x, w)
        _, record = rms_norm.SPEC.bind(x, w)
        exact = rms_norm.reference(record, torch.float64)
        check_within(out, exact, rms_norm.error_bound(record, exact))
        # float64 and rows beyond the declared limit are refused with reasons ...
        wide = randn(2, 9000, seed=3)
        why = hetero.explain("rms_norm", wide, randn(9000, seed=4)).candidates[0].reasons
        assert why == ["hidden 9000 outside [1, 8192]"]
        x64, w64 = x.double(), w.double()
        assert "dtype float64 not in ['float32']" in str(hetero.explain("rms_norm", x64, w64))
        # ... and fall back to the reference under the policy
        with pytest.warns(hetero.HeteroFallbackWarning, match="runs on reference.torch"):
            rms_norm.rms_norm(x64, w64)
        with hetero.use(policy="error"), pytest.raises(hetero.FallbackError):
            rms_norm.rms_norm(x64, w64)
    with pytest.raises(hetero.DispatchError, match="provides no rms_norm kernel"):
        rms_norm.rms_norm(x, w, backend="cpu")
    with pytest.raises(ValueError, match=r"^weight: expected shape \(96,\)"):
        rms_norm.rms_norm(x, randn(5))


def test_conformance_runs_the_cases_of_its_spec(rms_norm, tmp_path, capsys):
    report = tmp_path / "rows.json"
    code = main(["conformance", "--backend", "rows", "--ops", "rms_norm", "--json",
                 str(report), "--plugin", "rms_norm_op:SPEC", "--plugin", "rms_norm_op:backend"])
    data = json.loads(report.read_text())
    assert code == 0 and data["verdict"] == "conformant", capsys.readouterr().out
    by_status = {}
    for r in data["results"]:
        by_status.setdefault(r["status"], []).append(r["id"])
    # float32 cases (and bad input) pass; float16/float64 are declared unsupported; the
    # declared hidden limit adds cases at its ends and inside it
    derived = [r["id"] for r in data["results"] if r["origin"] == "declared"]
    assert {"rms_norm/float32/shape3x1/contiguous/plain",
            "rms_norm/float32/shape3x8192/contiguous/plain"} <= set(derived)
    assert sorted(by_status["Pass"]) == sorted(
        [c.id for c in rms_norm.numeric_cases() if c.dtype == "float32"] + derived
        + ["rms_norm/bad_input/x/whatx_not_a_tensor", "rms_norm/bad_input/weight/whatweight_shape"])
    assert data["coverage"] == {"declared": 3, "exercised": 3, "missing": []}
    assert len(by_status["NotSupported"]) == 10 and "Fail" not in by_status


def test_a_wrong_kernel_fails_conformance(rms_norm, monkeypatch):
    def forgets_the_weight(args):
        x = args.x
        args.out.copy_(x * torch.rsqrt(x.square().mean(-1, keepdim=True) + args.eps))

    support = rms_norm.backend.kernels()[0].support
    wrong = hetero.Kernel("rms_norm", "rows", forgets_the_weight, support)
    monkeypatch.setattr(rms_norm.RowsBackend, "kernels", lambda self: [wrong])
    hetero.unregister_backend("rows")
    hetero.register_backend(rms_norm.backend)
    report = hetero.conformance.run("rows", ops=["rms_norm"], isolate=False, progress=False)
    failed = {r.case.id for r in report.failures()}
    assert not report.conformant and "rms_norm/float32/shape1x1/contiguous/plain" in failed


def test_benchmarked_against_pytorch(rms_norm, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "rms_norm", "--backends", "rows", "--dtypes", "float32",
                 "--budget", "0", "--quiet", "--json", str(out)]) == 0
    rows = {r["backend"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"rows", "torch"}
    assert rows["rows"]["status"] == "ok" and rows["rows"]["error_ratio"] <= 1
    assert rows["rows"]["kernel"] == "rows.rows" and rows["rows"]["speedup"] > 0
    assert "| rms_norm | llama3-8b norm 64×4096 | float32 | rows.rows |" in capsys.readouterr().out
