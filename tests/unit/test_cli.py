"""The ``hetero`` command: info and explain, in-process and as an installed script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hetero.cli import main


def test_info_lists_reference_and_cpu_as_available(capsys):
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert "default order for cpu: cpu > torch > reference" in text
    assert "enable() on cpu: the native route" in text
    ops = {line.split(":")[0]: line for line in text.splitlines() if line.startswith("op ")}
    assert list(ops) == ["op gemm", "op attention", "op scaled_gemm", "op varlen_attention",
                         "op paged_attention"]
    assert "cpu.gemm" in ops["op gemm"] and "reference.torch" in ops["op attention"]
    for name in ("cpu", "reference"):
        line = next(line for line in text.splitlines() if line.startswith(name + " "))
        assert " available " in line


def test_info_json_declares_kernel_support(capsys):
    assert main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    cpu = next(b for b in data["backends"] if b["name"] == "cpu")
    assert cpu["available"] and cpu["reasons"] == []
    gemm = next(k for k in cpu["kernels"] if k["op"] == "gemm")
    assert gemm["support"]["dtypes"] == ["bfloat16", "float16", "float32"]
    flash = next(k for k in cpu["kernels"] if k["op"] == "attention")
    assert flash["backward"] and flash["support"]["limits"]["head_dim"] == "[1, 256]"


def test_info_shows_why_a_backend_is_unavailable(capsys):
    import hetero

    class Absent(hetero.Backend):
        name, device_type, api_version = "absent", "cuda", "2.0"

        def probe(self):
            return ["installed, but no CUDA device is present"]

    hetero.register_backend(Absent())
    try:
        assert main(["info"]) == 0
        text = capsys.readouterr().out
        assert "absent       unavailable" in text
        assert "why: installed, but no CUDA device is present" in text
    finally:
        hetero.unregister_backend("absent")


def test_explain_gemm_and_attention(capsys):
    assert main(["explain", "gemm", "--shape", "4,5,6", "--dtype", "bf16"]) == 0
    assert "runs cpu.gemm" in capsys.readouterr().out
    assert main(["explain", "gemm", "--shape", "4x5x6", "--dtype", "fp64"]) == 0
    out = capsys.readouterr().out
    assert "runs torch.matmul" in out and "- cpu.gemm: dtype float64 not in" in out
    assert main(["explain", "attention", "--shape", "1,8,16,64", "--kv-heads", "2",
                 "--causal", "--mask", "bool"]) == 0
    out = capsys.readouterr().out
    assert "gqa=True" in out and "mask=bool" in out and "runs cpu.flash" in out


def test_explain_reports_an_impossible_request_with_exit_code_1(capsys):
    assert main(["explain", "gemm", "--shape", "4,5,6", "--dtype", "fp64",
                 "--backend", "cpu"]) == 1
    assert "no kernel can run it" in capsys.readouterr().out


def test_explain_bad_shape_is_a_clean_error(capsys):
    assert main(["explain", "gemm", "--shape", "4,5"]) == 2
    assert "--shape: expected M,N,K" in capsys.readouterr().err


def test_console_script_is_installed_and_runs():
    script = Path(sys.executable).with_name("hetero")
    result = subprocess.run([str(script), "info"], capture_output=True, text=True, check=True)
    assert "reference" in result.stdout
