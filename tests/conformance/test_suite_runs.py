"""The suite on every backend that runs here (each must be conformant), its three entry
points, the report, and hang isolation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hetero.conformance as conformance
from hetero import fingerprint, registry
from hetero.conformance import declared
from hetero.cli import main

FIXTURES = Path(__file__).parent.parent / "fixtures"


@pytest.mark.parametrize("backend,quick", [
    ("reference", False), ("cpu", False), ("torch", False),
    ("triton", True),  # the interpreter is slow
    # the GPU kernel source by the host emulation (tensor-core and SIMT paths), and on a GPU
    ("cuda_emulated", False), ("rocm_emulated", False), ("cuda", False), ("rocm", False)])
def test_backends_here_are_conformant(backend, quick):
    if registry.get(backend).reasons_unavailable():
        pytest.skip(f"{backend} unavailable: {registry.get(backend).reasons_unavailable()}")
    report = conformance.run(backend, quick=quick, progress=False)
    if backend == "triton" and os.environ.get("TRITON_INTERPRET") == "1":
        # the interpreter computes bf16 tl.dot wrongly, so the backend refuses bf16 there
        assert report.verdict == conformance.INCOMPLETE, report.markdown()
        assert report.coverage["missing"] == [
            f"{op} dtype bfloat16" for op in ("gemm", "attention", "varlen_attention",
                                              "paged_attention")]
    elif backend == "torch" and "amx_bf16" in fingerprint.cpu_flags():
        # PyTorch's own answers, reported as they are: on an AMX CPU its bf16 GEMM turns
        # an inf in row 1 of a into NaNs across row 0 of the result.
        failed = [r.case.id for r in report.results if r.status == conformance.FAIL]
        assert failed == [i for i in failed if i.startswith("gemm/bfloat16/")
                          and i.endswith("/inf")], report.markdown()
    else:
        assert report.conformant, report.markdown()
    assert report.counts["Pass"] > 100
    assert not report.coverage["missing"] or backend == "triton"


def test_case_list_is_versioned_and_stable():
    cases = conformance.all_cases()
    assert len({c.id for c in cases}) == len(cases)
    assert conformance.case_hash(cases) == conformance.case_hash(conformance.all_cases())
    assert conformance.case_hash(conformance.all_cases(quick=True)) != \
        conformance.case_hash(cases)
    ids = {c.id for c in cases}
    for needle in ("K1031", "Sq13xSk29", "Sq29xSk13", "D80", "D96", "D112", "D160", "D192",
                   "/bshd/", "/offset/", "/b.T/", "mask_bool", "mask_additive", "nan", "M0"):
        assert any(needle in i for i in ids), needle


def test_cli_writes_json_and_markdown(tmp_path, capsys):
    status = main(["conformance", "--backend", "reference", "--quick", "--no-isolate",
                   "--json", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md")])
    assert status == 0
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["verdict"] == "conformant" and data["suite_version"] == conformance.VERSION
    core = conformance.all_cases(quick=True)
    derived = declared.cases(registry.get("reference"), True, core)
    assert data["case_hash"] == conformance.case_hash(core + derived)
    assert data["coverage"]["missing"] == [] and data["coverage"]["declared"] > 10
    assert {"python", "torch", "hetero", "platform"} <= set(data["environment"])
    assert "**conformant**" in (tmp_path / "r.md").read_text()
    assert main(["conformance", "--backend", "nope", "--quick"]) == 2


def test_pytest_entry_point_passes_and_fails():
    env = dict(os.environ, PYTHONPATH=str(FIXTURES))

    def pytest_run(*args):
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               "--pyargs", "hetero.conformance", "--hetero-quick", *args],
                              capture_output=True, text=True, env=env, cwd=FIXTURES)

    good = pytest_run("--hetero-backend", "reference")
    assert good.returncode == 0, good.stdout[-2000:]
    bad = pytest_run("--hetero-backend", "causal_off_by_one",
                     "--hetero-plugin", "planted_bugs:causal_off_by_one")
    assert bad.returncode == 1 and "causal" in bad.stdout


def test_a_hang_becomes_a_crash_row():
    sys.path.insert(0, str(FIXTURES))
    try:
        session = conformance.Session("hang_on_large_k", ["planted_bugs:hang_on_large_k"],
                                      timeout=10)  # isolated: registered in the worker only
        case = next(c for c in conformance.all_cases(quick=True) if c.params.get("K") == 1031)
        small = conformance.all_cases(quick=True)[0]
        hung, after = session.judge(case), session.judge(small)
        session.close()
    finally:
        sys.path.remove(str(FIXTURES))
    assert hung.status == conformance.CRASH and "hung" in hung.detail
    assert after.status == conformance.PASS  # a fresh worker took over
