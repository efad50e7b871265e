"""A sweep run as shards and merged by ``hetero report`` gives the verdict and counts
of one full run; a missing or repeated shard is reported and gets no verdict. The same
for ``hetero bench``."""

from __future__ import annotations

import json

import hetero.conformance as conformance
from hetero.cli import main


def _write(report, path):
    path.write_text(json.dumps(report.as_dict()))
    return str(path)


def test_conformance_shards_merge_to_the_full_run(tmp_path, capsys):
    full = conformance.run("cpu", quick=True, isolate=False, progress=False)
    parts = [_write(conformance.run("cpu", quick=True, isolate=False, progress=False,
                                    shard=(i, 2)), tmp_path / f"s{i}.json") for i in (0, 1)]
    assert all(json.loads(open(p).read())["verdict"] == "partial" for p in parts)
    assert main(["report", *parts, "--markdown", str(tmp_path / "m.md")]) == 0
    text = capsys.readouterr().out
    counts = ", ".join(f"{n} {s}" for s, n in full.counts.items())
    assert f"## `cpu` — **{full.verdict}**" in text and counts in text
    assert "(shards 0/2, 1/2)" in text

    assert main(["report", parts[0]]) == 1  # a deleted shard
    text = capsys.readouterr().out
    assert "**no verdict**" in text and "cases missing" in text
    assert main(["report", *parts, parts[1]]) == 0  # a shard twice: said, same results
    text = capsys.readouterr().out
    twice = len(json.loads(open(parts[1]).read())["results"])
    assert "**conformant**" in text and f"{twice} duplicated cases" in text


def test_bench_shards_merge_to_one_run(tmp_path, capsys):
    files = []
    for i in (0, 1):
        files.append(str(tmp_path / f"b{i}.json"))
        assert main(["bench", "--quick", "--quiet", "--dtypes", "float32", "--budget", "0",
                     "--shard", f"{i}/2", "--json", files[-1]]) == 0
    docs = [json.loads(open(f).read()) for f in files]
    assert docs[0]["settings"]["shard"] == "0/2" and docs[0]["settings"]["all_cases"]
    assert docs[0]["settings"]["all_case_hash"] == docs[1]["settings"]["all_case_hash"]
    capsys.readouterr()
    assert main(["report", *files]) == 0
    assert "complete: every case once" in capsys.readouterr().out
    assert main(["report", files[0]]) == 0
    assert " missing (" in capsys.readouterr().out
    assert main(["report", *files, files[0]]) == 0
    assert " duplicated (" in capsys.readouterr().out
