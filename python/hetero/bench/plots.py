"""Charts of one or more runs: a roofline per machine with every measured kernel placed
on it, and speed-up bars per backend (geometric mean over the correct cases of each op
and dtype, PyTorch = 1).

Roofline axes: arithmetic intensity (FLOPs per byte of minimum traffic) against achieved
throughput, both logarithmic; the roof is ``min(peak, bandwidth × intensity)`` for each
dtype's peak. Wrong results are drawn as red crosses.
"""

from __future__ import annotations

import math
from pathlib import Path

from .work import TORCH

_MARKERS = "o^sDv<>p*h"  # one per op, in order of first appearance


def pyplot():
    """matplotlib's pyplot on the file-only backend; ``ValueError`` for ``--plot`` when
    matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        raise ValueError("--plot needs matplotlib: pip install 'hetero[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def labels(docs: list[dict]) -> list[str]:
    """One name per run: device, host, threads and suite (numbered if that repeats)."""
    names = []
    for doc in docs:
        m = doc["machine"]
        names.append(f"{m['device_name']} ({m['host']}, {m['threads']} thr, "
                     f"{doc['settings']['shapes']})")
    return [f"{n} #{names[:i].count(n) + 1}" if names.count(n) > 1 else n
            for i, n in enumerate(names)]


def _unit(doc: dict) -> tuple[str, float]:
    return ("GFLOP/s", 1e3) if doc["settings"]["device"] == "cpu" else ("TFLOP/s", 1.0)


def _roofline(ax, doc: dict, label: str, colors: dict) -> None:
    unit, scale = _unit(doc)
    rows = [r for r in doc["rows"] if r["tflops"]]
    intensities = [r["flops"] / r["bytes"] for r in rows if r["bytes"]] or [1.0]
    lo, hi = min(intensities) / 2, max(intensities) * 2
    bandwidth = doc["peaks"]["tbytes_per_s"]
    roofs: dict[float, list[str]] = {}  # CPU dtypes share one peak
    for dtype, peak in sorted(doc["peaks"]["tflops"].items()):
        if peak and bandwidth:
            roofs.setdefault(peak, []).append(dtype)
    for peak, dtypes in roofs.items():
        xs = [lo, min(max(peak / bandwidth, lo), hi), hi]
        ax.plot(xs, [min(peak, bandwidth * x) * scale for x in xs], "k-", lw=1, alpha=0.5)
        ax.annotate(f"peak {'/'.join(dtypes)} {peak * scale:.4g}", (hi, peak * scale),
                    fontsize=7, ha="right", va="bottom")
    ops = list(dict.fromkeys(r["op"] for r in rows))
    for r in rows:
        x, y = r["flops"] / r["bytes"], r["tflops"] * scale
        if r["status"] == "wrong":
            ax.scatter(x, y, marker="x", color="red", s=40, label="wrong result")
        else:
            name = r["kernel"] or r["backend"]
            marker = _MARKERS[ops.index(r["op"]) % len(_MARKERS)]
            ax.scatter(x, y, marker=marker, s=22, alpha=0.8, color=colors[r["backend"]],
                       label=f"{name} ({r['op']})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / byte)")
    ax.set_ylabel(unit)
    ax.set_title(label, fontsize=9)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=7, loc="lower right")
    ax.grid(True, which="both", alpha=0.2)


def speedups(docs: list[dict]) -> dict[tuple[str, str], dict[str, float]]:
    """``{(run label, "op dtype"): {backend: geometric-mean speed-up vs PyTorch}}`` over
    the correct rows (see :func:`labels`)."""
    out: dict[tuple[str, str], dict[str, list[float]]] = {}
    for doc, label in zip(docs, labels(docs)):
        for r in doc["rows"]:
            if r["backend"] != TORCH and r["status"] == "ok" and r["speedup"]:
                group = out.setdefault((label, f"{r['op']} {r['dtype']}"), {})
                group.setdefault(r["backend"], []).append(r["speedup"])
    return {g: {b: math.exp(sum(map(math.log, v)) / len(v)) for b, v in per.items()}
            for g, per in out.items()}


def _bars(ax, docs: list[dict], colors: dict) -> None:
    groups = speedups(docs)
    backends = sorted({b for per in groups.values() for b in per})
    width = 0.8 / max(len(backends), 1)
    for j, backend in enumerate(backends):
        xs = [i + j * width for i, per in enumerate(groups.values()) if backend in per]
        ys = [per[backend] for per in groups.values() if backend in per]
        ax.bar(xs, ys, width, label=backend, color=colors[backend])
        for x, y in zip(xs, ys):
            ax.annotate(f"{y:.2f}×", (x, y), ha="center", va="bottom", fontsize=7)
    ax.axhline(1.0, color="k", lw=1, ls="--", label="PyTorch")
    ax.set_xticks([i + width * (len(backends) - 1) / 2 for i in range(len(groups))])
    ax.set_xticklabels([f"{op}\n{run.replace(' (', chr(10) + '(')}" for run, op in groups],
                       fontsize=7)
    ax.set_ylabel("speed-up vs PyTorch (geometric mean)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.2)


def plot(docs: list[dict], path: str | Path) -> Path:
    """Write the rooflines and the speed-up bars of ``docs`` to ``path`` (PNG, or any
    format matplotlib infers from the suffix)."""
    plt = pyplot()
    backends = sorted({r["backend"] for d in docs for r in d["rows"]})
    palette = plt.get_cmap("tab10")
    colors = {name: palette(i % 10) for i, name in enumerate(backends)}
    cols = len(docs)
    fig = plt.figure(figsize=(max(7, 6 * cols), 10))
    grid = fig.add_gridspec(2, cols)
    for i, (doc, label) in enumerate(zip(docs, labels(docs))):
        _roofline(fig.add_subplot(grid[0, i]), doc, label, colors)
    _bars(fig.add_subplot(grid[1, :]), docs, colors)
    return save(plt, fig, path)


def save(plt, fig, path: str | Path) -> Path:
    """Lay ``fig`` out, write it to ``path`` (its directory made if needed), close it."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
