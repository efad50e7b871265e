"""Result files describe themselves; ``hetero report`` merges runs from many machines
into one table and one chart."""

from __future__ import annotations

import copy
import csv
import json

import pytest

from hetero import bench
from hetero.bench import output, plots, report


@pytest.fixture(scope="module")
def doc(tmp_path_factory):
    path = tmp_path_factory.mktemp("shapes") / "one.json"
    path.write_text(json.dumps({"gemm": [{"m": 33, "n": 17, "k": 40}],
                                "attention": [{"hq": 2, "sq": 5, "sk": 9, "d": 8}]}))
    plan = bench.plan("all", shapes=str(path), budget_s=0.0, dtypes=["float32", "bfloat16"])
    return bench.run(plan, progress=False, command=["hetero", "bench"])


def test_json_describes_the_run(doc, tmp_path):
    saved = bench.load(bench.write_json(doc, tmp_path / "sub" / "run.json"))
    m = saved["machine"]
    assert saved["format"] == "hetero-bench/1" and saved["command"] == "hetero bench"
    assert {"host", "os", "cpu", "cores", "threads", "device_name", "git"} <= set(m)
    assert {"hetero", "torch", "python", "numpy", "triton"} <= set(m["versions"])
    assert m["threads"] >= 1 and saved["settings"]["dtypes"] == ["float32", "bfloat16"]
    assert saved["peaks"]["tflops"]["float32"] > 0 and saved["peaks"]["tbytes_per_s"] > 0
    assert "measured" in saved["peaks"]["source"]
    assert set(saved["formulas"]) >= {"gemm_flops", "attention_flops", "tflops", "pct_peak"}
    assert len(saved["rows"]) == 2 * 2 * 2  # cases × dtypes × (cpu, torch)
    assert all(r["status"] == "ok" for r in saved["rows"])


def test_csv_has_one_line_per_row(doc, tmp_path):
    with open(output.write_csv(doc, tmp_path / "run.csv")) as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == len(doc["rows"])
    assert lines[0]["host"] == doc["machine"]["host"] and lines[0]["bucket"] == "64x32x64x1"


def test_load_refuses_other_files(tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="not a `hetero bench --json` result"):
        bench.load(other)


def test_report_merges_two_machines(doc, tmp_path):
    second = copy.deepcopy(doc)
    second["machine"].update(host="other-host", device_name="Other CPU")
    for r in second["rows"]:
        r["device_name"] = "Other CPU"
    text = report.markdown([doc, second])
    assert "**Other CPU** on `other-host`" in text
    assert f"**{doc['machine']['device_name']}** on `{doc['machine']['host']}`" in text
    body = text.split("## All rows")[1]
    assert body.count("| Other CPU |") == len(doc["rows"])
    summary = text.split("## Summary")[1].split("## All rows")[0]
    assert "other-host" in summary and "gemm float32 | cpu" in summary
    png = plots.plot([doc, second], tmp_path / "report.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_speedups_are_geometric_means_of_correct_rows(doc):
    fake = copy.deepcopy(doc)
    cpu_rows = [r for r in fake["rows"] if r["backend"] == "cpu" and r["op"] == "gemm"
                and r["dtype"] == "float32"]
    cpu_rows[0]["speedup"] = 4.0
    fake["rows"].append(dict(cpu_rows[0], speedup=1.0, case="copy"))
    fake["rows"].append(dict(cpu_rows[0], speedup=100.0, status="wrong", case="bad"))
    (group, per), = [(g, v) for g, v in plots.speedups([fake]).items() if g[1] == "gemm float32"]
    assert per["cpu"] == pytest.approx(2.0)  # sqrt(4 · 1); the wrong row is left out
