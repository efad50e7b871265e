"""``hetero report``: many result files (many machines) merged into one Markdown report.

Per machine a header (device, host, threads, versions, git revision, peaks); then a
summary per machine, backend, op and dtype (cases, geometric-mean speed-up vs PyTorch,
best % of peak, wrong results), then every row. Plots: :func:`hetero.bench.plots.plot`.
The shards of one sweep (``hetero bench --shard I/N`` on one machine) are merged into
one run first, and what they miss or repeat is reported (:func:`merge_shards`).
"""

from __future__ import annotations

import json

from .. import shards

from .plots import labels, speedups
from .work import TORCH


def _machine_line(doc: dict) -> str:
    m, p, s = doc["machine"], doc["peaks"], doc["settings"]
    peaks = ", ".join(f"{d} {v:.4g}" for d, v in p["tflops"].items() if v) or "unknown"
    bw = f", {p['tbytes_per_s'] * 1e3:.4g} GB/s" if p["tbytes_per_s"] else ""
    return (f"- **{m['device_name']}** on `{m['host']}` ({s['device']}, {m['threads']} "
            f"threads), {doc['created']}: hetero {m['versions']['hetero']} (git "
            f"{m['git'] or 'unknown'}), torch {m['versions']['torch']}, triton "
            f"{m['versions']['triton'] or '-'}; peak TFLOP/s {peaks}{bw} ({p['source']}); "
            f"shapes `{s['shapes']}`{' (quick)' if s['quick'] else ''}")


def merge_shards(docs: list[dict]) -> tuple[list[dict], list[str]]:
    """``docs`` with the shards of each sweep (same machine and settings) merged into one
    document, and a line per merged sweep saying what its shards miss or repeat."""
    out, groups, notes = [], {}, []
    for doc in docs:
        settings = doc["settings"]
        if settings.get("shard") is None:
            out.append(doc)
            continue
        same = {k: v for k, v in settings.items() if k != "shard"}
        key = (doc["machine"].get("host"), doc["machine"].get("device_name"),
               json.dumps(same, sort_keys=True))
        groups.setdefault(key, []).append(doc)
    for parts in groups.values():
        merged = {**parts[0], "rows": [r for p in parts for r in p["rows"]],
                  "settings": {**parts[0]["settings"], "shard": None}}
        found = shards.check(parts[0]["settings"]["all_cases"],
                             [sorted({f"{r['op']}/{r['case']}" for r in p["rows"]})
                              for p in parts])
        names = ", ".join(p["settings"]["shard"] for p in parts)
        problems = [f"{len(found[k])} {k} ({', '.join(found[k][:5])})"
                    for k in ("missing", "duplicated", "unknown") if found[k]]
        notes.append(f"{merged['machine']['device_name']}: shards {names} of "
                     f"{len(parts[0]['settings']['all_cases'])} cases merged; " +
                     ("; ".join(problems) if problems else "complete: every case once"))
        out.append(merged)
    return out, notes


def markdown(docs: list[dict]) -> str:
    """The merged report of ``docs`` (each a result document; shards merged first)."""
    docs, notes = merge_shards(docs)
    lines = ["# hetero bench report", "", "## Machines", ""]
    lines += [_machine_line(d) for d in docs]
    if notes:
        lines += ["", "## Shards", ""] + [f"- {n}" for n in notes]
    lines += ["", "## Summary", "",
              "| run | op dtype | backend | geomean vs torch | cases | best % peak | wrong |",
              "|---|---|---|---|---|---|---|"]
    means = speedups(docs)
    for doc, label in zip(docs, labels(docs)):
        groups: dict[tuple[str, str], list[dict]] = {}
        for r in doc["rows"]:
            if r["backend"] != TORCH:
                groups.setdefault((f"{r['op']} {r['dtype']}", r["backend"]), []).append(r)
        for (op_dtype, backend), rows in groups.items():
            mean = means.get((label, op_dtype), {}).get(backend)
            peaks = [r["pct_peak"] for r in rows if r["status"] == "ok" and r["pct_peak"]]
            lines.append(
                f"| {label} | {op_dtype} | {backend} | "
                f"{'-' if mean is None else f'{mean:.2f}×'} | "
                f"{sum(r['status'] == 'ok' for r in rows)}/{len(rows)} | "
                f"{f'{max(peaks):.0f}%' if peaks else '-'} | "
                f"{sum(r['status'] == 'wrong' for r in rows)} |")
    lines += ["", "## All rows", "",
              "| machine | op | case | dtype | backend | median ms | TFLOP/s | % peak | "
              "vs torch | status |", "|---|---|---|---|---|---|---|---|---|---|"]
    for doc in docs:
        for r in doc["rows"]:
            ms = "-" if r["median_s"] is None else f"{r['median_s'] * 1e3:.4g}"
            tf = "-" if r["tflops"] is None else f"{r['tflops']:.4g}"
            pct = "-" if r["pct_peak"] is None else f"{r['pct_peak']:.0f}%"
            vs = "-" if r["speedup"] is None else f"{r['speedup']:.2f}×"
            status = "**WRONG**" if r["status"] == "wrong" else r["status"]
            lines.append(f"| {doc['machine']['device_name']} | {r['op']} | {r['case']} | "
                         f"{r['dtype']} | {r['kernel'] or r['backend']} | {ms} | {tf} | "
                         f"{pct} | {vs} | {status} |")
    return "\n".join(lines) + "\n"
