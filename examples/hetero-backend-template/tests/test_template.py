"""The template backend's own tests: found through its entry point, each kernel right
against hetero's float64 oracle in every dtype it declares, and conformant by hetero's
suite. Shapes and features come from the kernels' declared support, so narrowing or
widening the declaration needs no edit here."""

from __future__ import annotations

import json

import pytest

import hetero
from hetero import conformance, registry
from hetero.cli import main
from hetero.ops.attention.checks import attention_inputs
from hetero.ops.gemm.checks import gemm_operands
from hetero.testing import check_against_oracle

from hetero_backend_template import backend

NAME = backend.name


def declared(op: str) -> list:
    """``(support, dtype)`` for every dtype each of the backend's ``op`` kernels
    declares (an op it has no kernel for: no test)."""
    return [pytest.param(k.support, dtype, id=f"{k.name}-{str(dtype).removeprefix('torch.')}")
            for k in backend.kernels() if k.op == op
            for dtype in sorted(k.support.dtypes, key=str)]


def allowed(support, name: str, wanted: int) -> int:
    """``wanted``, or the value nearest it that the declared limit on ``name`` allows."""
    return support.limits[name].nearest(wanted) if name in support.limits else wanted


def test_found_through_its_entry_point():
    entry = registry.get(NAME)
    assert entry is not None and entry.source.startswith("hetero-backend-template")
    assert not entry.reasons_unavailable()


@pytest.mark.parametrize("support, dtype", declared("gemm"))
@pytest.mark.parametrize("layout", ["b.T", "sliced"])
def test_gemm_matches_the_oracle(support, dtype, layout):
    m, n, k = (allowed(support, name, size) for name, size in (("M", 13), ("N", 7), ("K", 300)))
    a, b = gemm_operands(layout, m, n, k, dtype=dtype)
    check_against_oracle("gemm", a, b, backend=NAME)


@pytest.mark.parametrize("support, dtype", declared("attention"))
def test_attention_matches_the_oracle(support, dtype):
    d = allowed(support, "head_dim", 32)
    dv = allowed(support, "head_dim_v", 24 if "head_dim_v" in support.features else d)
    hq, hkv = (4, 2) if "gqa" in support.features else (2, 2)
    sq, sk = allowed(support, "Sq", 7), allowed(support, "Sk", 19)
    q, k, v = attention_inputs(2, hq, hkv, sq, sk, d, dv, dtype=dtype)
    check_against_oracle("attention", q, k, v, causal="causal" in support.features,
                         backend=NAME)


def test_hetero_info_shows_it(capsys):
    assert main(["info", "--json"]) == 0
    shown = next(b for b in json.loads(capsys.readouterr().out)["backends"]
                 if b["name"] == NAME)
    assert shown["available"] and shown["api_version"] == backend.api_version
    assert {k["op"] for k in shown["kernels"]} == {k.op for k in backend.kernels()}


def test_conformant_on_the_quick_suite():
    report = conformance.run(NAME, quick=True, progress=False)
    assert report.conformant, report.markdown()
    assert not report.coverage["missing"]
    assert hetero.PLUGIN_API.split(".")[0] == backend.api_version.split(".")[0]
