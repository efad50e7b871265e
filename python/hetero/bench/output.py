"""Presenting a run: the results table, JSON and CSV files.

The table is Markdown (readable on a terminal, pasteable into ``bench/RESULTS.md``).
Throughput is GFLOP/s on a CPU and TFLOP/s elsewhere; ``% peak`` is against the peak in
the result file's ``peaks`` (measured on a CPU); ``% roof`` against the roofline bound
``max(FLOPs / peak, bytes / bandwidth)``, the fair measure for memory-bound cases such as
decode; ``vs torch`` is PyTorch's median over this one; ``err/bound`` ≤ 1 passes. A wrong result shows ``WRONG`` and gets no rank
and no speed-up; ``best`` marks the fastest correct participant of each case.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path


def _throughput_unit(doc: dict) -> tuple[str, float]:
    return ("GFLOP/s", 1e3) if doc["settings"]["device"] == "cpu" else ("TFLOP/s", 1.0)


def _num(value, fmt: str, missing: str = "-") -> str:
    return missing if value is None else format(value, fmt)


def _percent(value) -> str:
    return "-" if value is None else f"{value:.0f}%"


def _status(row: dict) -> str:
    status = row["status"]
    if status == "ok":
        text = "ok, best" if row["rank"] == 1 else "ok"
        text += ", dispatch" if row.get("dispatch") else ""
        return text + (" (>100% of peak: measurement error?)" if row.get("flag") else "")
    if status == "wrong":
        return "**WRONG**"
    reason = row["reason"].replace("|", "/")
    return f"{status}: {reason[:70]}{'…' if len(reason) > 70 else ''}"


def table(doc: dict) -> str:
    """The run as a Markdown table, one row per (case, dtype, participant)."""
    unit, scale = _throughput_unit(doc)
    peaks = doc["peaks"]
    lines = [f"# {doc['machine']['device_name']} ({doc['settings']['device']}, "
             f"{doc['settings']['threads']} threads), hetero {doc['machine']['versions']['hetero']}, "
             f"torch {doc['machine']['versions']['torch']}; peak: " + ", ".join(
                 f"{d} {v * scale:.4g} {unit}" for d, v in peaks["tflops"].items() if v) +
             (f", {peaks['tbytes_per_s'] * 1e3:.4g} GB/s" if peaks["tbytes_per_s"] else "") +
             f" ({peaks['source']})", "",
             f"| op | case | dtype | backend | median ms (p20–p80) | {unit} | GB/s | % peak "
             f"| % roof | vs torch | err/bound | status |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    previous = None
    for r in doc["rows"]:
        key = (r["op"], r["case"], r["dtype"])
        case = f"{r['op']} | {r['case']} | {r['dtype']}" if key != previous else " | | "
        previous = key
        timing = "-" if r["median_s"] is None else (
            f"{r['median_s'] * 1e3:.3g} ({r['p20_s'] * 1e3:.3g}–{r['p80_s'] * 1e3:.3g})")
        speed = "-" if r["speedup"] is None else f"{r['speedup']:.2f}×"  # ok rows only
        lines.append(
            f"| {case} | {r['kernel'] or r['backend']} | {timing} | "
            f"{_num(r['tflops'] and r['tflops'] * scale, '.4g')} | {_num(r['gbps'], '.4g')} | "
            f"{_percent(r['pct_peak'])} | {_percent(r['pct_roofline'])} | {speed} | "
            f"{_num(r['error_ratio'], '.2g')} | {_status(r)} |")
    wrong = sum(r["status"] == "wrong" for r in doc["rows"])
    lines.append("")
    lines.append(f"{len(doc['rows'])} rows in {doc['seconds']} s; "
                 f"{wrong} wrong result{'s' if wrong != 1 else ''}"
                 f"{' (flagged, not ranked)' if wrong else ''}.")
    lines.append(dispatch_summary(doc))
    return "\n".join(lines)


def dispatch_summary(doc: dict, at_least: float = 0.97) -> str:
    """How the kernels dispatch picks compare with PyTorch, case by case."""
    picked = [r for r in doc["rows"] if r.get("dispatch")]
    if not picked:
        return "Dispatch picks a kernel that did not take part in this run."
    ratios = [(r["speedup"] or 0.0, r) for r in picked]
    below = [f"{r['op']} {r['case']} {r['dtype']} ({r['kernel']}, {ratio:.2f}×)"
             for ratio, r in ratios if ratio < at_least]
    worst = min(ratio for ratio, _ in ratios)
    flagged = sum(bool(r.get("flag")) for r in doc["rows"])
    return (f"Dispatch picks a kernel at least {at_least}× PyTorch's speed for "
            f"{len(picked) - len(below)} of {len(picked)} cases (slowest {worst:.2f}×)"
            + (f"; below: {'; '.join(below)}" if below else "")
            + (f". {flagged} rows above 100% of the peak or roofline (measurement errors)."
               if flagged else "."))


def write_json(doc: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


CSV_COLUMNS = ("op", "case", "dtype", "backend", "kernel", "status", "median_s", "p20_s",
               "p80_s", "samples", "flops", "bytes", "tflops", "gbps", "pct_peak",
               "pct_roofline", "speedup", "rank", "error", "error_ratio", "bucket", "reason")


def write_csv(doc: dict, path: str | Path) -> Path:
    """One line per row; the machine is in the first columns so files concatenate."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("host", "device_name") + CSV_COLUMNS)
        for r in doc["rows"]:
            values = [("x".join(map(str, r[c])) if c == "bucket" else r[c]) for c in CSV_COLUMNS]
            writer.writerow([doc["machine"]["host"], doc["machine"]["device_name"], *values])
    return path


def load(path: str | Path) -> dict:
    """A result file written by ``hetero bench --json``; ``ValueError`` naming it if not."""
    from .runner import FORMAT

    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read a bench result ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{path}: not a `hetero bench --json` result (format "
                         f"{doc.get('format') if isinstance(doc, dict) else None!r}, "
                         f"expected {FORMAT!r})")
    return doc
