"""``hetero tune``: the fastest *correct* kernel per bucket, and dispatch following it."""

from __future__ import annotations

import json

import pytest
import torch

import hetero
from hetero import bench, tuned
from hetero.bench import tune
from hetero.cli import main


@pytest.fixture
def measured(bench_backends, tiny_shapes, tmp_path):
    """A GEMM run of sleepy (the CPU default order's first), cpu and fastwrong."""
    plan = bench.plan("gemm", backends=["sleepy", "cpu", "fastwrong"], shapes=tiny_shapes,
                      dtypes=["float32"], budget_s=0.0)
    doc = bench.run(plan, progress=False)
    path = bench.write_json(doc, tmp_path / "run.json")
    yield doc, path
    hetero.set_tuned_table(None)


def test_tuned_table_overturns_the_default_order(measured):
    doc, _ = measured
    a, b = torch.randn(96, 72), torch.randn(80, 72).t()  # the bucket of case "a": x @ w.t()
    assert hetero.explain("gemm", a, b).chosen.qualname == "sleepy.k"  # priority 1000
    table = tune.table_from_runs([doc])
    device = tuned.device_name(torch.device("cpu"))
    entry = table.lookup(device, "gemm", "float32", (128, 128, 128, 1))
    # fastwrong is the fastest but wrong: never picked; sleepy is correct but slow; the
    # PyTorch baseline stands for the torch backend's kernel
    fast = ("cpu.gemm", "torch.matmul")
    assert entry.kernel in fast and entry.runner_up in fast
    assert entry.median_s < entry.runner_up_s * (1 + tune.TORCH_MARGIN)
    assert {e.kernel for e in table.entries.values()} <= set(fast)
    hetero.set_tuned_table(table)
    decision = hetero.explain("gemm", a, b)
    assert decision.chosen.qualname == entry.kernel and decision.tuned_choice
    assert "chosen by the tuned table" in str(decision)
    # a bucket nobody measured keeps the default order
    assert hetero.explain("gemm", torch.randn(1000, 72), b).chosen.qualname == "sleepy.k"


def test_a_kernel_wrong_anywhere_in_a_bucket_is_out():
    def row(kernel, case, seconds, status="ok"):
        return {"backend": kernel.split(".")[0], "kernel": kernel, "status": status,
                "device_name": "dev", "op": "gemm", "dtype": "float32", "bucket": [8, 8, 8, 0],
                "case": case, "median_s": seconds}
    doc = {"rows": [row("fast.k", "x", 1.0), row("fast.k", "y", 1.0, "wrong"),
                    row("slow.k", "x", 3.0), row("slow.k", "y", 3.0)]}
    (entry,) = tune.table_from_runs([doc]).entries.values()
    assert (entry.kernel, entry.median_s, entry.cases, entry.runner_up) == ("slow.k", 6.0, 2, None)


def test_the_pytorch_baseline_stands_for_the_torch_backend():
    rows = [{"backend": name, "kernel": name if name == "torch" else "slow.k", "status": "ok",
             "device_name": "dev", "op": "gemm", "dtype": "float32", "bucket": [8, 8, 8, 0],
             "case": "x", "median_s": seconds} for name, seconds in (("slow", 3.0), ("torch", 0.1))]
    (entry,) = tune.table_from_runs([{"rows": rows}]).entries.values()
    assert (entry.kernel, entry.runner_up) == ("torch.matmul", "slow.k")


@pytest.mark.parametrize("lead, winner", [(0.02, "torch.matmul"), (0.05, "fast.k")])
def test_a_kernel_takes_a_bucket_from_pytorch_only_by_the_margin(lead, winner):
    assert 0.02 < tune.TORCH_MARGIN < 0.05
    rows = [{"backend": name, "kernel": name if name == "torch" else "fast.k", "status": "ok",
             "device_name": "dev", "op": "gemm", "dtype": "float32", "bucket": [8, 8, 8, 0],
             "case": "x", "median_s": seconds}
            for name, seconds in (("fast", 1.0), ("torch", 1.0 + lead))]
    (entry,) = tune.table_from_runs([{"rows": rows}]).entries.values()
    assert entry.kernel == winner
    if winner == "torch.matmul":
        assert entry.runner_up == "fast.k" and "kept: no kernel beat it" in entry.describe()


def test_cli_tune_writes_and_merges(measured, tmp_path, capsys):
    _, run = measured
    out = tmp_path / "tuned.json"
    assert main(["tune", "--from", str(run), "--out", str(out)]) == 0
    assert " for gemm float32 " in capsys.readouterr().out
    first = tuned.load(out)
    assert len(first) == 2
    extra = first.as_dict()
    extra["entries"][0].update(bucket=[1, 1, 1, 0])  # an entry from an earlier tuning run
    out.write_text(json.dumps(extra))
    assert main(["tune", "--from", str(run), "--out", str(out)]) == 0
    assert len(tuned.load(out)) == 3  # kept, and the two measured ones rewritten
    assert main(["tune", "--from", str(run), "--out", str(out), "--replace"]) == 0
    assert len(tuned.load(out)) == 2
