"""``hetero bench`` and ``hetero report`` from the command line."""

from __future__ import annotations

import json

from hetero.cli import main


def test_bench_prints_the_table_and_writes_json_csv_png(tiny_shapes, tmp_path, capsys):
    files = {k: tmp_path / f"out/run.{k}" for k in ("json", "csv", "png")}
    code = main(["bench", "--shapes", tiny_shapes, "--dtypes", "float32", "--budget", "0",
                 "--quiet", "--json", str(files["json"]), "--csv", str(files["csv"]),
                 "--plot", str(files["png"])])
    out = capsys.readouterr().out
    assert code == 0
    assert "| gemm | a x @ w.t() 96×80×72 | float32 | cpu.gemm |" in out
    assert "| attention | B=2 H=4/2 Sq=24 Sk=40 D=16 causal | float32 | cpu.flash |" in out
    assert "0 wrong results" in out
    assert all(f.stat().st_size > 0 for f in files.values())
    assert json.loads(files["json"].read_text())["settings"]["shapes"] == tiny_shapes


def test_bench_exits_1_when_a_result_is_wrong(bench_backends, tiny_shapes, capsys):
    assert main(["bench", "gemm", "--backends", "fastwrong", "--shapes", tiny_shapes,
                 "--dtypes", "float32", "--budget", "0", "--quiet"]) == 1
    assert "**WRONG**" in capsys.readouterr().out


def test_bench_progress_goes_to_stderr(tiny_shapes, capsys):
    assert main(["bench", "attention", "--shapes", tiny_shapes, "--dtypes", "float32",
                 "--budget", "0"]) == 0
    err = capsys.readouterr().err
    assert "measuring the peaks" in err and "[1/1 " in err


def test_bad_options_are_one_line_errors(capsys):
    assert main(["bench", "--shapes", "nonesuch"]) == 2
    assert capsys.readouterr().err.startswith("hetero bench: --shapes: expected one of")
    assert main(["bench", "--backends", "nope"]) == 2
    assert "no backend named 'nope'" in capsys.readouterr().err
    assert main(["report", "missing.json"]) == 2
    assert "missing.json: cannot read a bench or conformance result" in capsys.readouterr().err


def test_report_merges_files(tiny_shapes, tmp_path, capsys):
    runs = []
    for host in ("first", "second"):
        path = tmp_path / f"{host}.json"
        assert main(["bench", "gemm", "--shapes", tiny_shapes, "--dtypes", "float32",
                     "--budget", "0", "--quiet", "--json", str(path)]) == 0
        doc = json.loads(path.read_text())
        doc["machine"]["host"] = host
        path.write_text(json.dumps(doc))
        runs.append(str(path))
    capsys.readouterr()
    md, png = tmp_path / "report.md", tmp_path / "report.png"
    assert main(["report", *runs, "--markdown", str(md), "--plot", str(png)]) == 0
    text = md.read_text()
    assert "on `first`" in text and "on `second`" in text
    assert text.count("| gemm | a x @ w.t() 96×80×72 | float32 | cpu.gemm |") == 2
    assert png.read_bytes()[:4] == b"\x89PNG"
