"""What an audit found (:class:`AuditReport`): every routed call with its error against
the float64 oracle, the drift of the whole model's output, which calls explain it, and
the calls hetero could not serve — as a verdict line, Markdown, JSON and a plot."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..bench import plots
from .recorder import CallRecord

_LAYER = re.compile(r"\.(?:layers|layer|h|blocks)\.(\d+)(?:\.|$)")


def layer_of(module: str) -> int | None:
    """The decoder layer a module path is in (``model.layers.3.mlp`` -> 3), if any."""
    found = _LAYER.search(module)
    return int(found.group(1)) if found else None


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.3g}"


@dataclass
class AuditReport:
    """The outcome of :func:`hetero.audit`.

    calls: every routed call, in order (:class:`~hetero.audit.recorder.CallRecord`).
    drift: ``{"torch": {...}, "hetero": {...}}``: the output's error against the model
        run in float64 — ``max_error``, ``rms_error``, ``top1_agreement`` (share of
        positions whose most likely token is the float64 model's; ``None`` for outputs
        that are not logits) — for plain PyTorch in the audited dtype and for the run on
        the audited backend.
    attribution: re-runs with the worst-ranked calls moved to the reference backend:
        ``{"moved": [call keys], "rms_error": ..., "removed": share of the drift gone}``.
    by_op: re-runs with every call of one op (each op with calls out of bound) moved:
        ``{"op", "moved": calls, "rms_error", "removed"}`` — the op that costs accuracy.
    gradients: with ``train=True``, per parameter ``{"name", "relative_error"}`` of its
        gradient against the float64 model's, worst first; else ``None``.
    """

    model: str
    backend: str
    dtype: str
    calls: list[CallRecord]
    drift: dict
    attribution: list[dict] = field(default_factory=list)
    by_op: list[dict] = field(default_factory=list)
    gradients: list[dict] | None = None
    sample: int = 1
    seconds: float = 0.0

    def checked(self) -> list[CallRecord]:
        """The checked calls, worst error-to-bound ratio first."""
        return sorted((c for c in self.calls if c.ratio is not None),
                      key=lambda c: -c.ratio)

    def out_of_bound(self) -> list[CallRecord]:
        return [c for c in self.checked() if c.ratio > 1]

    def unserved(self) -> list[CallRecord]:
        """Calls the audited backend did not serve (PyTorch's kernels did), with the
        reason."""
        if self.backend == "default":
            return [c for c in self.calls if c.served_by is None]
        return [c for c in self.calls
                if c.served_by is None or c.served_by.split(".")[0] != self.backend]

    @property
    def verdict(self) -> str:
        checked, bad = self.checked(), self.out_of_bound()
        drift = self.drift["hetero"]["rms_error"]
        if not checked:
            text = f"no call was checked ({len(self.calls)} routed calls)"
        elif not bad:
            text = (f"all {len(checked)} checked calls within their bounds; output drift "
                    f"(rms) {drift:.3g}, plain PyTorch in {self.dtype} "
                    f"{self.drift['torch']['rms_error']:.3g}")
        else:
            worst = bad[0]
            text = (f"{len(bad)} of {len(checked)} checked calls out of their bounds; worst "
                    f"{worst.module} ({worst.op}) at {worst.ratio:.3g}× its bound")
            moved = next((a for a in self.attribution if len(a["moved"]) == len(bad)), None)
            if moved is not None:
                text += (f"; moving the {len(bad)} to the reference backend removes "
                         f"{_pct(moved['removed'])} of the output drift")
            if self.by_op:
                text += "; by op: " + ", ".join(
                    f"{o['op']} calls {_pct(o['removed'])}"
                    for o in sorted(self.by_op, key=lambda o: -(o["removed"] or 0)))
        if self.unserved():
            text += (f"; {len(self.unserved())} calls not served by {self.backend} (listed "
                     f"with the reason)")
        return text

    def as_dict(self) -> dict:
        return {"format": "hetero-audit/1", "model": self.model, "backend": self.backend,
                "dtype": self.dtype, "verdict": self.verdict, "sample": self.sample,
                "seconds": round(self.seconds, 3), "drift": self.drift,
                "attribution": self.attribution, "by_op": self.by_op,
                "gradients": self.gradients,
                "calls": [c.as_dict() for c in self.calls]}

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=1))
        return path

    def markdown(self, worst: int = 20) -> str:
        d = self.drift
        lines = [f"# Audit: `{self.model}` on `{self.backend}` ({self.dtype})", "",
                 f"**Verdict**: {self.verdict}.", "",
                 "| run | output max error vs float64 | rms error | top-1 agreement |",
                 "|---|---|---|---|"]
        for name, label in (("torch", f"plain PyTorch ({self.dtype})"),
                            ("hetero", f"`{self.backend}` ({self.dtype})")):
            lines.append(f"| {label} | {_num(d[name]['max_error'])} | "
                         f"{_num(d[name]['rms_error'])} | {_pct(d[name]['top1_agreement'])} |")
        checked = self.checked()
        on_torch = sum(c.served_by is not None and c.served_by.startswith("torch.")
                       for c in self.calls)
        lines += ["", f"## Worst calls ({len(checked)} of {len(self.calls)} routed calls "
                  "checked" + (f", one in {self.sample}" if self.sample > 1 else "") +
                  (f"; {on_torch} ran PyTorch's own kernels (the `torch` backend), "
                   "unchecked" if on_torch else "") + ")", "",
                  "| # | module | op | shapes | dtype | kernel | error | bound | ratio |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for i, c in enumerate(checked[:worst], 1):
            lines.append(f"| {i} | `{c.module}` | {c.op} | {c.shapes} | {c.dtype} | "
                         f"{c.served_by} | {_num(c.error)} | {_num(c.bound)} | "
                         f"**{c.ratio:.3g}** |")
        if self.attribution:
            lines += ["", "## Attribution: the worst calls moved to the reference backend",
                      "", "| calls moved | output rms error | drift removed |", "|---|---|---|"]
            lines += [f"| {len(a['moved'])} | {_num(a['rms_error'])} | {_pct(a['removed'])} |"
                      for a in self.attribution]
            lines += [f"| every {o['op']} call ({o['moved']}) | {_num(o['rms_error'])} | "
                      f"{_pct(o['removed'])} |" for o in self.by_op]
        unserved = self.unserved()
        if unserved:
            lines += ["", f"## Calls {self.backend} did not serve ({len(unserved)})", "",
                      "| module | op | ran on | reason |", "|---|---|---|---|"]
            lines += [f"| `{c.module}` | {c.op} | {c.served_by or 'PyTorch'} | {c.reason} |"
                      for c in unserved[:worst]]
        if self.gradients:
            lines += ["", "## Gradients against the float64 model (worst first)", "",
                      "| parameter | relative error |", "|---|---|"]
            lines += [f"| `{g['name']}` | {_num(g['relative_error'])} |"
                      for g in self.gradients[:worst]]
        return "\n".join(lines) + "\n"

    def plot(self, path: str | Path) -> Path:
        """Error-to-bound ratio per layer, one line per op (the worst call of that op in
        the layer); the bound is the dashed line at 1. Needs matplotlib."""
        plt = plots.pyplot()
        worst: dict[str, dict[int, float]] = {}
        for c in self.checked():
            layer = layer_of(c.module)
            if layer is not None:
                per_op = worst.setdefault(c.op, {})
                per_op[layer] = max(per_op.get(layer, 0.0), c.ratio)
        fig, ax = plt.subplots(figsize=(7, 4))
        for op, per_layer in sorted(worst.items()):
            layers = sorted(per_layer)
            ax.plot(layers, [max(per_layer[n], 1e-6) for n in layers], "o-", label=op)
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="bound")
        ax.set_yscale("log")
        ax.set_xlabel("layer")
        ax.set_ylabel("error / bound (worst call)")
        ax.set_title(f"{self.model} on {self.backend} ({self.dtype})")
        ax.legend()
        return plots.save(plt, fig, path)
