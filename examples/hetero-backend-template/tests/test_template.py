"""The template backend's own tests: found through its entry point, correct against
hetero's float64 oracle, and conformant by hetero's suite."""

from __future__ import annotations

import json

import pytest
import torch

import hetero
from hetero import conformance, registry
from hetero.cli import main
from hetero.ops.attention.checks import attention_inputs
from hetero.ops.gemm.checks import gemm_operands
from hetero.ops.gemm.numerics import gemm_error_bound
from hetero.testing import check_within, poison_


def test_found_through_its_entry_point():
    entry = registry.get("template")
    assert entry is not None and entry.source.startswith("hetero-backend-template")
    assert not entry.reasons_unavailable()
    assert "template" not in hetero.dispatch.default_order("cpu")  # opt-in


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", ["b.T", "sliced"])
def test_gemm_matches_the_oracle(dtype, layout):
    a, b = gemm_operands(layout, 13, 7, 300, dtype=dtype)
    out = poison_(torch.empty(13, 7, dtype=dtype))
    hetero.gemm(a, b, out=out, backend="template")
    check_within(out, hetero.reference_gemm(a, b), gemm_error_bound(a, b, out_dtype=dtype))


def test_attention_matches_the_oracle():
    q, k, v = attention_inputs(2, 4, 2, 7, 19, 32, 24)  # GQA, Sq < Sk, Dv != D
    out = poison_(torch.empty(2, 4, 7, 24))
    hetero.attention(q, k, v, causal=True, out=out, backend="template")
    check_within(out, hetero.reference_attention(q, k, v, causal=True), 1e-5)


def test_hetero_info_shows_it(capsys):
    assert main(["info", "--json"]) == 0
    backend = next(b for b in json.loads(capsys.readouterr().out)["backends"]
                   if b["name"] == "template")
    assert backend["available"] and backend["api_version"] == "2.0"
    assert {k["op"] for k in backend["kernels"]} == {"gemm", "attention"}


def test_conformant_on_the_quick_suite():
    report = conformance.run("template", quick=True, progress=False)
    assert report.conformant, report.markdown()
