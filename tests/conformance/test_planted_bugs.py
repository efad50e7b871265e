"""The suite's verdict is trustworthy in both directions: a correct backend is judged
conformant, and each backend with one planted bug is judged not conformant, with the
cases that exercise that bug (and only those) failing."""

from __future__ import annotations

import hetero.conformance as conformance


def _failing(report):
    return {r.case.id for r in report.failures()}


def _numeric(report, predicate):
    return {r.case.id for r in report.results if r.case.kind == "numeric" and predicate(r.case)}


def test_a_correct_backend_is_conformant(planted):
    report = planted("correct")
    assert report.conformant, [(r.case.id, r.detail) for r in report.failures()]
    assert report.counts["Pass"] > 200


def test_causal_off_by_one(planted):
    report = planted("causal_off_by_one")
    assert not report.conformant
    assert _failing(report) <= _numeric(report, lambda c: "causal" in c.features)
    assert any("causal" in c for c in _failing(report))


def test_wrong_default_scale(planted):
    report = planted("wrong_default_scale")
    assert not report.conformant
    assert _failing(report) <= _numeric(report, lambda c: c.op == "attention"
                                        and "scale" not in c.features)
    assert all("scale" not in r.case.features for r in report.failures())


def test_strides_ignored(planted):
    report = planted("strides_ignored")
    assert not report.conformant
    # broadcast batch dims are stride-0 views too
    assert _failing(report) <= _numeric(report, lambda c: c.op == "gemm" and (
        c.layout != "contiguous" or "batch" in c.features))
    assert {r.case.layout for r in report.failures()} >= {"b.T", "offset"}


def test_silent_downcast_to_fp16(planted):
    report = planted("downcast_to_fp16")
    assert not report.conformant
    assert _failing(report) <= _numeric(report, lambda c: c.op == "gemm"
                                        and c.dtype in ("float32", "bfloat16"))
    assert any(r.case.dtype == "float32" for r in report.failures())


def test_writes_only_part_of_the_output(planted):
    report = planted("partial_write")
    assert not report.conformant
    assert _failing(report) == _numeric(report, lambda c: c.op == "gemm" and c.params["M"] > 0
                                        and c.params["N"] > 0 and c.dtype != "float64")


def test_a_crash_is_a_crash_row_and_the_run_goes_on(planted):
    report = planted("crash_on_large_k")
    crashed = [r for r in report.results if r.status == conformance.CRASH]
    assert not report.conformant
    assert crashed and all(r.case.params["K"] > 1000 for r in crashed)
    assert all("died" in r.detail for r in crashed)
    assert {r.case.id for r in crashed} == _failing(report)  # everything else passed
    assert report.results[-1].status == conformance.PASS  # the run reached the end


def test_scaled_gemm_planted_bugs_are_caught_and_only_where_they_act(planted):
    """Each scaled_gemm bug fails exactly cases of its kind, and the correct reference
    with the same declaration passes them all."""
    def judge(name):
        return planted(name, ops=["scaled_gemm"])

    correct = judge("scaled_correct")
    assert correct.conformant and correct.counts["Pass"] > 50
    for name, acts_on in (
            ("row_scale_per_column", lambda c: "row" in c.features),
            ("block_scale_off_by_one", lambda c: "block" in c.features),
            ("e4m3fn_as_fnuz", lambda c: c.dtype == "float8_e4m3fn")):
        report = judge(name)
        assert not report.conformant, name
        failing = _failing(report)
        assert failing and failing <= _numeric(report, acts_on), name


def test_serving_attention_planted_bugs_are_caught_and_only_where_they_act(planted):
    """varlen/paged bugs — a block-table walk that skips a block, a window one key too
    wide, softcap ignored — each fail cases of their kind only; the correct reference
    with the same declaration passes them all."""
    def judge(name):
        return planted(name, ops=["varlen_attention", "paged_attention"])

    correct = judge("serving_correct")
    assert correct.conformant and correct.counts["Pass"] > 100
    for name, acts_on in (
            ("block_walk_off_by_one", lambda c: c.op == "paged_attention"),
            ("window_off_by_one", lambda c: any("window" in f for f in c.features)),
            ("softcap_skipped", lambda c: "softcap" in c.features)):
        report = judge(name)
        assert not report.conformant, name
        failing = _failing(report)
        assert failing and failing <= _numeric(report, acts_on), name
