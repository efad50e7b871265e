"""What a backend declares is what the suite tests: cases derived from the declaration
catch over-declarations the fixed list cannot, shape limits can be declared, and the
verdict is "not run" or "incomplete" rather than green when the backend did not run or
a declared item was never exercised."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import hetero
import hetero.conformance as conformance
from hetero import registry
from hetero.cli import main
from hetero.conformance import declared
from hetero.ops import spec
from hetero.testing import randn

FIXTURES = Path(__file__).parent.parent / "fixtures"


def _failing(report):
    return [r.case for r in report.failures()]


@pytest.mark.parametrize("name, wrong", [
    ("head_dim_on_the_16_grid", lambda c: c.params["D"] % 16 != 0),
    ("value_dim_as_query_dim", lambda c: c.params["Dv"] > c.params["D"]),
    ("k_beyond_4000_dropped", lambda c: c.params["K"] > 4000),
])
def test_over_declarations_are_caught_by_derived_cases(planted, name, wrong):
    report = planted(name, isolate=False)
    failing = _failing(report)
    assert report.verdict == conformance.NOT_CONFORMANT
    assert failing and all(c.origin == "declared" and wrong(c) for c in failing)
    # every derived case in reach of the bug fails, and the core alone would pass
    in_reach = [r.case for r in report.results if r.case.kind == "numeric"
                and r.case.op == failing[0].op and wrong(r.case)]
    assert {c.id for c in in_reach} == {c.id for c in failing}
    assert all(r.status == conformance.PASS for r in report.results  # the ops it declares
               if r.case.origin == "core" and r.case.dtype != "float64"
               and r.case.op in ("gemm", "attention"))
    text = report.markdown()
    assert all(f"`{c.id}`" in text for c in failing)  # named in the report


def test_derived_cases_are_seeded_recorded_and_cover_the_declaration():
    entry = registry.get("cpu")
    first, again = declared.cases(entry), declared.cases(entry)
    assert [c.id for c in first] == [c.id for c in again]
    head_dims = {c.params["D"] for c in first if c.op == "attention"}
    assert {1, 2, 15, 17, 255, 256} <= head_dims  # below 16, odd, both ends
    assert any(c.params["Dv"] > c.params["D"] for c in first if c.op == "attention")
    assert all(c.origin == "declared" for c in first)
    core = conformance.all_cases()
    assert not {c.id for c in declared.cases(entry, core=core)} & {c.id for c in core}
    labels = {i.label for i in declared.declared_items(entry)}
    assert {"gemm dtype bfloat16", "attention feature head_dim_v",
            "attention head_dim 1 (min)", "attention head_dim 256 (max)"} <= labels


def test_a_declared_size_limit_refuses_calls_beyond_it_and_names_it():
    sys.path.insert(0, str(FIXTURES))
    try:
        from planted_bugs import Planted

        hetero.register_backend(Planted("k_upto_64", gemm_limits={"K": hetero.Range(1, 64)}))
        a, b = randn(3, 65), randn(65, 4)
        decision = hetero.explain("gemm", a, b, backend="k_upto_64")
        assert decision.chosen is None
        assert "K 65 outside [1, 64]" in str(decision)
        assert decision.traits.sizes == (3, 4, 65)
        hetero.gemm(a[:, :64], b[:64], backend="k_upto_64")
    finally:
        hetero.unregister_backend("k_upto_64")
        sys.path.remove(str(FIXTURES))
    # while no kernel limits sizes, calls do not carry them (decisions stay per class)
    limiting = any(k.support.limits_sizes(spec("gemm").traits)
                   for k in registry.discovered_kernels() if k.op == "gemm")
    sizes = hetero.explain("gemm", randn(3, 65), randn(65, 4)).traits.sizes
    assert (sizes is None) == (not limiting)


def test_a_limit_on_an_unknown_size_is_refused_at_registration():
    with pytest.raises(ValueError, match="'L'.* not a trait or size of gemm"):
        hetero.register_backend(_Declaring("bad_limit", {"L": hetero.Range(1, 2)}))


class _Declaring(hetero.Backend):
    api_version = hetero.PLUGIN_API
    device_type = "cpu"
    default = False

    def __init__(self, name, limits, probe=()):
        self.name, self._limits, self._probe = name, limits, list(probe)

    def probe(self):
        return self._probe

    def kernels(self):
        def gemm(args):
            args.out.copy_(hetero.reference_gemm(args.a, args.b, args.bias, args.alpha,
                                                 args.beta, compute_dtype=torch.float32))
        return [hetero.Kernel("gemm", "k", gemm, hetero.Support(
            dtypes=frozenset({torch.float32}), limits=self._limits))]


unavailable = _Declaring("unavailable", {}, probe=["the device driver is not loaded"])
huge_k = _Declaring("huge_k", {"K": hetero.Range(1, 1 << 40)})


def test_a_backend_that_cannot_run_here_is_not_run_exit_2(capsys):
    status = main(["conformance", "--backend", "unavailable", "--quick", "--ops", "gemm",
                   "--plugin", f"{__name__}:unavailable"])
    out = capsys.readouterr().out
    assert status == 2 and "**not run**" in out and "the device driver is not loaded" in out
    assert "Pass" not in out.split("not run")[1].split("Environment")[0]
    hetero.unregister_backend("unavailable")


def test_cuda_without_a_gpu_is_not_run(tmp_path, capsys):
    if not registry.get("cuda").reasons_unavailable():
        pytest.skip("a GPU is here: the cuda backend runs")
    status = main(["conformance", "--backend", "cuda", "--quick", "--json",
                   str(tmp_path / "r.json")])
    data = json.loads((tmp_path / "r.json").read_text())
    assert status == 2 and data["verdict"] == "not run" and data["results"] == []
    assert data["unavailable"] == registry.get("cuda").reasons_unavailable()
    assert "no device" in capsys.readouterr().out or data["unavailable"]


def test_a_declared_end_no_case_can_reach_is_incomplete_exit_3(capsys):
    status = main(["conformance", "--backend", "huge_k", "--quick", "--ops", "gemm",
                   "--no-isolate", "--plugin", f"{__name__}:huge_k"])
    out = capsys.readouterr().out
    assert status == 3 and "**incomplete**" in out
    assert f"never exercised: gemm K {1 << 40} (max)" in out
    hetero.unregister_backend("huge_k")


class _NoKernels(_Declaring):
    def kernels(self):
        return []


def test_a_backend_that_ran_no_kernel_is_not_conformant_only_because_nothing_failed():
    hetero.register_backend(_NoKernels("empty", {}))
    try:
        report = conformance.run("empty", quick=True, isolate=False, progress=False)
    finally:
        hetero.unregister_backend("empty")
    assert report.counts["Fail"] == 0 and report.counts["Pass"] > 0  # bad inputs only
    assert report.verdict == conformance.INCOMPLETE
    assert "No numeric case ran a kernel." in report.markdown()
