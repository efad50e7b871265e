"""gemm in the benchmark: its cases (``out = x @ w.t()``, the layout of
``torch.nn.Linear`` with ``w`` stored ``(N, K)``, or ``x @ w``; and, as a backward
pass has them, ``x.t() @ ...`` with ``x`` stored ``(K, M)``) in the ``llm`` and
``square`` suites, shape-file entries, and the work of one case: PyTorch's ``matmul``
as the baseline, and the result checked on a sample — the first and last 8 rows and
columns (where edge tiles go wrong) plus 8 random ones of each — against float64 within
the K-aware rounding bound."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ... import tuned
from ...bench.suites import MODELS, Sizes
from ...bench.work import BenchSpec, Inputs, Work, positive, sample
from .api import layout_class
from .numerics import gemm_error_bound, gemm_flops

LAYOUTS = ("x @ w.t()", "x @ w", "x.t() @ w.t()", "x.t() @ w")


@dataclass(frozen=True)
class GemmCase:
    """``out (batch, M, N) = x (batch, M, K) @ w``, ``w`` stored ``(N, K)`` for
    ``... @ w.t()`` or ``(K, N)`` for ``... @ w``, ``x`` stored ``(K, M)`` for
    ``x.t() @ ...``; FLOPs ``2·batch·M·N·K``."""

    m: int
    n: int
    k: int
    batch: int = 1
    layout: str = "x @ w.t()"
    name: str = ""
    op: ClassVar[str] = "gemm"

    @property
    def shape(self) -> str:
        return f"{f'{self.batch}×' if self.batch > 1 else ''}{self.m}×{self.n}×{self.k}"

    @property
    def label(self) -> str:
        return f"{self.name + ' ' if self.name else ''}{self.layout} {self.shape}"

    @property
    def flops(self) -> float:
        return gemm_flops(self.m, self.n, self.k, self.batch)

    def min_bytes(self, element_size: int) -> float:
        return element_size * self.batch * (self.m * self.k + self.k * self.n + self.m * self.n)

    @property
    def bucket(self) -> tuple[int, ...]:
        return (*tuned.bucket(self.m, self.n, self.k),
                2 * self.layout.startswith("x.t()") + self.layout.endswith("w.t()"))

    def key(self) -> tuple:
        return (self.op, self.m, self.n, self.k, self.batch, self.layout)


def llm(s: Sizes) -> list[GemmCase]:
    """The four projections of each model's layer, for a prefill of ``s.tokens`` tokens
    and a decode step of ``s.batch`` sequences; layers sharing a shape share a case."""
    cases: dict[tuple, GemmCase] = {}
    for model in MODELS[:s.models]:
        qkv = (model.heads + 2 * model.kv_heads) * model.head_dim
        projections = (("qkv", qkv, model.hidden),
                       ("o", model.hidden, model.heads * model.head_dim),
                       ("gate_up", 2 * model.ffn, model.hidden), ("down", model.hidden, model.ffn))
        for phase, m in (("prefill", s.tokens), ("decode", s.batch)):
            for proj, n, k in projections:
                case = GemmCase(m, n, k, name=f"{model.name} {phase} {proj}")
                seen = cases.get(case.key())
                cases[case.key()] = case if seen is None else \
                    GemmCase(m, n, k, name=f"{seen.name}, {case.name}")
    return list(cases.values())


def square(s: Sizes) -> list[GemmCase]:
    """``n×n×n`` GEMMs."""
    return [GemmCase(n, n, n, layout="x @ w", name="square") for n in s.square]


def case_from(item: dict) -> GemmCase:
    """``{m, n, k[, batch, layout, name]}``: batch 1, layout ``x @ w.t()`` by default."""
    fields = {"m", "n", "k", "batch", "layout", "name"}
    if not set(item) <= fields:
        raise ValueError(f"unexpected {sorted(set(item) - fields)!r} (fields: {sorted(fields)})")
    layout = item.get("layout", "x @ w.t()")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    return GemmCase(positive(item, "m", minimum=0), positive(item, "n", minimum=0),
                    positive(item, "k", minimum=0), positive(item, "batch", 1), layout,
                    str(item.get("name", "")))


def work(case: GemmCase, dtype: torch.dtype, device: torch.device, inputs: Inputs) -> Work:
    lead = (case.batch,) if case.batch > 1 else ()
    if case.layout.startswith("x.t()"):
        x = inputs.get((*lead, case.k, case.m), 1).to(device, dtype).transpose(-1, -2)
    else:
        x = inputs.get((*lead, case.m, case.k), 1).to(device, dtype)
    if case.layout.endswith("w.t()"):
        w = inputs.get((*lead, case.n, case.k), 2).to(device, dtype).transpose(-1, -2)
    else:
        w = inputs.get((*lead, case.k, case.n), 2).to(device, dtype)
    gen = torch.Generator().manual_seed(3)
    rows, cols = sample(case.m, gen), sample(case.n, gen)
    batches = sorted({0, case.batch - 1})

    def sub(t, first, last):
        t = t[batches] if lead else t
        return t[..., first, :][..., :, last]

    xs, ws = sub(x, rows, slice(None)), sub(w, slice(None), cols)
    return Work((x, w), {}, lambda out=None: torch.matmul(x, w, out=out),
                lambda out: sub(out, rows, cols), torch.matmul(xs.double(), ws.double()),
                gemm_error_bound(xs, ws, out_dtype=dtype))


def case_of(args) -> GemmCase | None:
    """The case that measures a call like ``args`` (a :class:`~.api.GemmArgs`): its
    sizes and operand layout (:func:`~.api.layout_class`)."""
    out = args.out
    m, n, k = out.shape[-2], out.shape[-1], args.a.shape[-1]
    if m * n * k == 0:
        return None
    layout = {0: "x @ w", 1: "x @ w.t()", 2: "x.t() @ w", 3: "x.t() @ w.t()"}[
        layout_class(args.a, args.b)]
    return GemmCase(m, n, k, out.numel() // (m * n), layout, name="calibration")


SPEC = BenchSpec({"llm": llm, "square": square}, case_from, work, "2·batch·M·N·K", case_of)
