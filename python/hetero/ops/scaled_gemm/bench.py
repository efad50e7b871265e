"""scaled_gemm in the benchmark: Llama-3-8B's linear layers with quantised weights, at
a decode step and a prefill (the ``llm`` suite), and shape-file entries.

A case is ``out (M, N) = x (M, K) @ w.t()``, ``w`` stored ``(N, K)`` in the input dtype.
fp8 calls use row-wise scales and a bfloat16 result, against ``torch._scaled_mm``; int8
calls are ``torch._int_mm``'s (no scales, an int32 result), against it. The result is
checked on a sample of rows and columns against float64 within the op's bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ... import tuned
from ...bench.suites import MODELS, Sizes
from ...bench.work import BenchSpec, Inputs, Work, positive, sample
from .api import ScaledGemmArgs
from .numerics import error_bound, reference


@dataclass(frozen=True)
class ScaledGemmCase:
    """``x (M, K) @ w.t()``, ``w`` stored ``(N, K)``; FLOPs ``2·M·N·K``."""

    m: int
    n: int
    k: int
    name: str = ""
    op: ClassVar[str] = "scaled_gemm"

    @property
    def shape(self) -> str:
        return f"{self.m}×{self.n}×{self.k}"

    @property
    def label(self) -> str:
        return f"{self.name + ' ' if self.name else ''}x @ w.t() {self.shape}"

    @property
    def flops(self) -> float:
        return 2.0 * self.m * self.n * self.k

    def min_bytes(self, element_size: int) -> float:
        """Quantised operands (``element_size`` bytes each), a 2-byte result."""
        return element_size * (self.m * self.k + self.k * self.n) + 2 * self.m * self.n

    @property
    def bucket(self) -> tuple[int, ...]:
        return (*tuned.bucket(self.m, self.n, self.k), 1)

    def key(self) -> tuple:
        return (self.op, self.m, self.n, self.k)


def llm(s: Sizes) -> list[ScaledGemmCase]:
    """Llama-3-8B's four projections at a decode step of ``s.batch`` sequences and a
    prefill of ``s.tokens`` tokens."""
    model = MODELS[0]
    qkv = (model.heads + 2 * model.kv_heads) * model.head_dim
    projections = (("qkv", qkv, model.hidden), ("o", model.hidden, model.hidden),
                   ("gate_up", 2 * model.ffn, model.hidden), ("down", model.hidden, model.ffn))
    return [ScaledGemmCase(m, n, k, f"{model.name} {phase} {proj}")
            for phase, m in (("decode", s.batch), ("prefill", s.tokens))
            for proj, n, k in projections]


def case_from(item: dict) -> ScaledGemmCase:
    """``{m, n, k[, name]}``."""
    fields = {"m", "n", "k", "name"}
    if not set(item) <= fields:
        raise ValueError(f"unexpected {sorted(set(item) - fields)!r} (fields: {sorted(fields)})")
    return ScaledGemmCase(positive(item, "m"), positive(item, "n"), positive(item, "k"),
                          str(item.get("name", "")))


def quantize(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Standard normal data as ``dtype``: int8 over about ±120, fp8 times 4."""
    if dtype is torch.int8:
        return (x * 40).round().clamp(-128, 127).to(torch.int8)
    return (x * 4).to(dtype)


def work(case: ScaledGemmCase, dtype: torch.dtype, device: torch.device,
         inputs: Inputs) -> Work:
    x = quantize(inputs.get((case.m, case.k), 1), dtype).to(device)
    w = quantize(inputs.get((case.n, case.k), 2), dtype).to(device)
    if dtype is torch.int8:
        args, kwargs = (x, w.t(), None, None), {"out_dtype": torch.int32}

        def torch_call(out=None):
            return torch._int_mm(x, w.t(), out=out) if out is not None else torch._int_mm(x, w.t())
    else:
        gen = torch.Generator().manual_seed(5)
        scale_x = (torch.rand(case.m, 1, generator=gen) + 0.5).to(device)
        scale_w = (torch.rand(1, case.n, generator=gen) + 0.5).to(device)
        args, kwargs = (x, w.t(), scale_x, scale_w), {"out_dtype": torch.bfloat16}

        def torch_call(out=None):
            return torch._scaled_mm(x, w.t(), scale_x, scale_w, out_dtype=torch.bfloat16,
                                    out=out)
    gen = torch.Generator().manual_seed(3)
    rows, cols = sample(case.m, gen), sample(case.n, gen)
    picked = args[:2]
    sub_a, sub_b = picked[0][rows], picked[1][:, cols]
    sub_scales = ((None, None) if args[2] is None else (args[2][rows], args[3][:, cols]))
    out_dtype = kwargs["out_dtype"]
    record = ScaledGemmArgs(sub_a, sub_b, *(s if s is not None else torch.ones(1, 1)
                                            for s in sub_scales),
                            torch.empty(len(rows), len(cols), dtype=out_dtype), "row"
                            if args[2] is not None else "tensor")
    exact = reference(record, torch.float64)
    return Work(args, kwargs, torch_call, lambda out: out[rows][:, cols], exact,
                error_bound(record, exact))


def case_of(args: ScaledGemmArgs) -> ScaledGemmCase | None:
    """The case that measures a call like ``args``."""
    m, n, k = args.out.shape[0], args.out.shape[1], args.a.shape[1]
    return ScaledGemmCase(m, n, k, "calibration") if m * n * k else None


SPEC = BenchSpec({"llm": llm}, case_from, work, "2·M·N·K", case_of)
