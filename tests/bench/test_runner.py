"""The sweep: metric formulas, the wrong-result flag, ranking, and rows for
participants that cannot serve a case or fail."""

from __future__ import annotations

import pytest
import torch

import hetero
from hetero import bench
from hetero.bench import machine, runner, timing
from hetero.ops.attention.bench import AttentionCase
from hetero.ops.gemm.bench import GemmCase


def test_metric_formulas():
    case = GemmCase(100, 200, 300)
    row = runner.new_row(case, "bfloat16", "cpu", "dev")
    peaks = machine.Peaks({"bfloat16": 2.0}, 0.5, "test")  # 2 TFLOP/s, 500 GB/s
    runner._metrics(row, timing.Samples((0.004, 0.001, 0.002, 0.003, 0.005)), peaks)
    flops, nbytes = 2 * 100 * 200 * 300, 2 * (100 * 300 + 300 * 200 + 100 * 200)
    assert (row["flops"], row["bytes"]) == (flops, nbytes)
    assert row["median_s"] == 0.003
    assert row["p20_s"] == pytest.approx(0.0018) and row["p80_s"] == pytest.approx(0.0042)
    assert row["tflops"] == pytest.approx(flops / 0.003 / 1e12)
    assert row["gbps"] == pytest.approx(nbytes / 0.003 / 1e9)
    assert row["pct_peak"] == pytest.approx(100 * flops / 0.003 / 2e12)
    # compute-bound here: the roof is FLOPs / peak
    assert row["pct_roofline"] == pytest.approx(100 * (flops / 2e12) / 0.003)
    decode = runner.new_row(GemmCase(1, 4096, 4096), "bfloat16", "cpu", "dev")
    runner._metrics(decode, timing.Samples((0.001,)), peaks)  # memory-bound: bytes / bandwidth
    assert decode["pct_roofline"] == pytest.approx(100 * (decode["bytes"] / 0.5e12) / 0.001)


def test_attention_row_uses_visible_pairs():
    row = runner.new_row(AttentionCase(1, 2, 2, 4, 4, 8, causal=True), "float32", "x", "d")
    assert row["flops"] == 4 * 2 * 8 * 10 and row["bucket"] == [2, 4, 4, 8]


def test_rank_and_speedup_skip_wrong_results():
    rows = [dict(backend="torch", status="ok", median_s=2.0),
            dict(backend="fast", status="ok", median_s=1.0),
            dict(backend="fastest", status="wrong", median_s=0.1),
            dict(backend="none", status="unsupported", median_s=None)]
    for r in rows:
        r.update(rank=None, speedup=None)
    runner._rank(rows)
    assert [(r["rank"], r["speedup"]) for r in rows] == \
        [(2, 1.0), (1, 2.0), (None, None), (None, None)]


def _run(shapes, backends, **kw):
    plan = bench.plan("all", backends=backends, shapes=shapes, budget_s=0.0, **kw)
    return bench.run(plan, progress=False, command=["test"])


def test_wrong_kernel_is_flagged_and_never_ranked(bench_backends, tiny_shapes):
    doc = _run(tiny_shapes, ["cpu", "fastwrong", "gemmonly", "broken"], dtypes=["float32"])
    by = {(r["op"], r["case"], r["backend"]): r for r in doc["rows"]}
    gemm_a = "a x @ w.t() 96×80×72"
    wrong = by[("gemm", gemm_a, "fastwrong")]
    assert wrong["status"] == "wrong" and wrong["error_ratio"] > 1
    assert "out of bound" in wrong["reason"]
    assert wrong["rank"] is None and wrong["speedup"] is None
    assert wrong["median_s"] is not None  # still timed, so the cost is visible
    # it is the fastest participant, and still not the best
    assert wrong["median_s"] < by[("gemm", gemm_a, "cpu")]["median_s"]
    assert by[("gemm", gemm_a, "cpu")]["status"] == "ok"
    assert by[("gemm", gemm_a, "cpu")]["rank"] in (1, 2, 3)
    assert by[("gemm", gemm_a, "cpu")]["error_ratio"] <= 1
    assert by[("gemm", gemm_a, "torch")]["speedup"] == 1.0
    assert all(r["status"] == "ok" for r in doc["rows"] if r["backend"] in ("cpu", "torch"))
    attention = [r for r in doc["rows"] if r["op"] == "attention"]
    only_gemm = next(r for r in attention if r["backend"] == "gemmonly")
    assert only_gemm["status"] == "unsupported" and "provides no attention kernel" in \
        only_gemm["reason"]
    broken = by[("gemm", gemm_a, "broken")]
    assert broken["status"] == "error" and "device lost" in broken["reason"]
    text = bench.table(doc)
    assert "**WRONG**" in text and "2 wrong results" in text.splitlines()[-2]


def test_every_result_is_checked_where_an_edge_tile_is_wrong(bench_backends, tiny_shapes):
    """A kernel that forgets only the last output row is caught by the sampled check."""
    from planted_bugs import Planted, _partial_write

    from hetero import registry

    registry.register(Planted("lastrow", gemm=_partial_write))
    try:
        doc = _run(tiny_shapes, ["lastrow"], dtypes=["float32"])
    finally:
        registry.unregister("lastrow")
    gemm = [r for r in doc["rows"] if r["op"] == "gemm" and r["backend"] == "lastrow"]
    assert [r["status"] for r in gemm] == ["wrong", "wrong"]


def test_plan_rejects_bad_requests():
    with pytest.raises(ValueError, match="no backend named 'nope'"):
        bench.plan(backends=["nope"])
    with pytest.raises(ValueError, match="--dtypes"):
        bench.plan(dtypes=["int4"])
    with pytest.raises(ValueError, match="op: expected"):
        bench.plan("conv")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch sees no CUDA"):
            bench.plan(device="cuda")


def test_default_participants_are_the_available_backends_and_torch():
    plan = bench.plan("gemm", shapes="square", quick=True)
    assert plan.backends[-1] == "torch" and "reference" not in plan.backends
    assert "cpu" in plan.backends  # the native backend is built in CI
    assert "triton" not in plan.backends  # opt-in on the CPU (interpreter)


def test_memory_bound_cases_are_timed_on_copies_beyond_the_cache(monkeypatch):
    monkeypatch.setattr(machine, "last_level_cache_bytes", lambda: 8 << 20)
    peaks = machine.Peaks({"float32": 1.0}, 0.05, "test")  # 1 TFLOP/s, 50 GB/s
    decode = GemmCase(1, 1024, 1024)  # 4 MiB of weights: memory-bound
    assert runner._cold_copies(decode, "float32", torch.device("cpu"), peaks) == 8
    square = GemmCase(512, 512, 512)  # compute-bound
    assert runner._cold_copies(square, "float32", torch.device("cpu"), peaks) == 1
    assert runner._cold_copies(decode, "float32", torch.device("cpu"),
                               machine.Peaks({}, None, "unknown")) == 1


def test_rows_above_the_peak_are_flagged_and_dispatch_is_summarised():
    peaks = machine.Peaks({"float32": 1e-3}, 1e-3, "test")  # 1 GFLOP/s: anything beats it
    row = runner.new_row(GemmCase(64, 64, 64), "float32", "cpu", "dev")
    runner._metrics(row, timing.Samples((1e-4,)), peaks)
    assert row["flag"].startswith("above 100% of the peak")
    row.update(status="ok", rank=1, speedup=0.5, dispatch=True, kernel="cpu.gemm")
    doc = {"rows": [row], "peaks": {"tflops": {"float32": 1e-3}, "tbytes_per_s": 1e-3,
                                   "source": "test"}}
    summary = bench.output.dispatch_summary(doc)
    assert "for 0 of 1 cases (slowest 0.50×)" in summary and "(cpu.gemm, 0.50×)" in summary
    assert "1 rows above 100% of the peak" in summary


class _DeclaresItsPeaks(hetero.Backend):
    """A float16-only gemm on a device whose peaks the backend declares."""

    name, device_type, api_version, default = "declares_peaks", "cpu", hetero.PLUGIN_API, False

    def peaks(self, device):
        return hetero.DevicePeaks({"float16": 0.002}, 0.004, "test datasheet")

    def kernels(self):
        def gemm(args):
            args.out.copy_(hetero.reference_gemm(args.a, args.b, args.bias, args.alpha,
                                                 args.beta, compute_dtype=torch.float32))
        return [hetero.Kernel("gemm", "k", gemm, hetero.Support(
            dtypes=frozenset({torch.float16}), features=frozenset({"bias", "batch"})))]


def test_a_backend_declares_its_peaks_and_its_dtypes_are_the_default(tiny_shapes):
    hetero.register_backend(_DeclaresItsPeaks())
    try:
        plan = bench.plan("gemm", backends=["declares_peaks"], shapes=tiny_shapes, budget_s=0.0)
        assert plan.dtypes == ["float16"]  # what the backend declares
        doc = bench.run(plan, progress=False, command=["test"])
    finally:
        hetero.unregister_backend("declares_peaks")
    assert doc["peaks"]["tflops"] == {"float16": 0.002}
    assert doc["peaks"]["source"] == "declared by backend 'declares_peaks' (test datasheet)"
    rows = [r for r in doc["rows"] if r["backend"] == "declares_peaks"]
    assert rows and all(r["status"] == "ok" for r in rows)
    for r in rows:  # % of peak is against the declared 2 GFLOP/s
        assert r["pct_peak"] == pytest.approx(100 * r["tflops"] / 0.002, rel=1e-3)
    assert "declared by backend 'declares_peaks'" in bench.output.table(doc)
    assert bench.runner.default_dtypes(["cpu", "torch"], ["gemm"]) == \
        ["float32", "bfloat16", "float16"]


def test_bandwidth_measured_again_after_the_sweep_clears_a_false_flag(monkeypatch):
    peaks = machine.Peaks({"float32": 1.0}, 0.040, "measured on 2 threads")  # 40 GB/s
    row = runner.new_row(GemmCase(1, 4096, 4096), "float32", "cpu", "dev")
    runner._metrics(row, timing.Samples((row["bytes"] / 44e9,)), peaks)  # reads 44 GB/s
    assert row["flag"] and row["pct_roofline"] > 100
    plan = bench.plan("gemm", shapes="square", quick=True)
    monkeypatch.setattr(machine, "measure_bandwidth", lambda threads: (45e9, "triad"))
    later = runner._bandwidth_again(plan, peaks, [row])
    assert later.tbytes_per_s == 0.045 and "40.0 GB/s before the sweep" in later.source
    assert row["flag"] is None and 97 < row["pct_roofline"] < 98
    monkeypatch.setattr(machine, "measure_bandwidth", lambda threads: (30e9, "triad"))
    assert runner._bandwidth_again(plan, later, [row]) is later  # a slower one is ignored
    best = runner._bandwidth_again(plan, later, [row], during=[31e9, 50e9, 29e9])
    assert best.tbytes_per_s == 0.050 and "50.0 in 3 readings between its cases" in best.source
    assert 87 < row["pct_roofline"] < 89  # 44 of 50 GB/s
