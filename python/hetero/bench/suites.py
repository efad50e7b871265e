"""Benchmark cases as data: the named suites (``square``, ``llm``) and shape files.

A case is one problem shape; the harness runs it in every requested dtype on every
backend. FLOPs and the minimum bytes moved (each operand read once, the result written
once) are properties of the case, so every backend is measured against the same count.

- GEMM ``out = x @ w.t()`` (the layout of ``torch.nn.Linear``: ``w`` is ``(N, K)``) or
  ``x @ w``; FLOPs ``2·batch·M·N·K``.
- Attention ``(B, Hq, Sq, D)`` queries over ``(B, Hkv, Sk, D)`` keys/values; FLOPs
  ``4·B·Hq·D·pairs`` with ``pairs`` the (query, key) pairs a query may see: ``Sq·Sk``,
  or for causal (bottom-right aligned) about half of it when ``Sq == Sk`` and all of it
  for a decode step (``Sq == 1``). See :func:`hetero.counters.attention_flops`.

The ``llm`` suite takes its shapes from the layers of two 7–8B models, for a prefill of
``tokens`` tokens and a decode step of ``batch`` sequences with ``context`` cached
tokens; sizes scale with the device (a CPU gets a short prompt).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar, NamedTuple

from ..counters import attention_flops, gemm_flops
from ..tuned import attention_bucket, gemm_bucket

GEMM_LAYOUTS = ("x @ w.t()", "x @ w")


@dataclass(frozen=True)
class GemmCase:
    """``out (batch, M, N) = x (batch, M, K) @ w``, ``w`` stored ``(N, K)`` for
    ``x @ w.t()`` or ``(K, N)`` for ``x @ w``."""

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
        return gemm_bucket(self.m, self.n, self.k)

    def key(self) -> tuple:
        return (self.op, self.m, self.n, self.k, self.batch, self.layout)


@dataclass(frozen=True)
class AttentionCase:
    """``q (b, hq, sq, d)``, ``k``/``v (b, hkv, sk, d)``."""

    b: int
    hq: int
    hkv: int
    sq: int
    sk: int
    d: int
    causal: bool = False
    name: str = ""
    op: ClassVar[str] = "attention"

    @property
    def shape(self) -> str:
        gqa = f"/{self.hkv}" if self.hkv != self.hq else ""
        seq = f"S={self.sq}" if self.sq == self.sk else f"Sq={self.sq} Sk={self.sk}"
        return (f"B={self.b} H={self.hq}{gqa} {seq} D={self.d}"
                f"{' causal' if self.causal else ''}")

    @property
    def label(self) -> str:
        return f"{self.name + ' ' if self.name else ''}{self.shape}"

    @property
    def flops(self) -> float:
        return attention_flops(self.b * self.hq, self.sq, self.sk, self.d, self.d, self.causal)

    def min_bytes(self, element_size: int) -> float:
        return element_size * self.b * self.d * (2 * self.hq * self.sq + 2 * self.hkv * self.sk)

    @property
    def bucket(self) -> tuple[int, ...]:
        return attention_bucket(self.sq, self.sk)

    def key(self) -> tuple:
        return (self.op, self.b, self.hq, self.hkv, self.sq, self.sk, self.d, self.causal)


Case = GemmCase | AttentionCase


@dataclass(frozen=True)
class Model:
    """The GEMM and attention shapes of one decoder layer."""

    name: str
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int  # width of each of the gate and up projections
    source: str


MODELS = (
    Model("llama3-8b", 4096, 32, 8, 128, 14336,
          "meta-llama/Meta-Llama-3-8B config.json: hidden_size 4096, intermediate_size "
          "14336, num_attention_heads 32, num_key_value_heads 8"),
    Model("qwen-7b", 4096, 32, 32, 128, 11008,
          "Qwen/Qwen-7B config.json: hidden_size 4096, num_attention_heads 32, "
          "intermediate_size 22016 (two 11008-wide projections)"),
)


class Sizes(NamedTuple):
    """How big the suites are on one kind of device."""

    tokens: int  # llm prefill: tokens in the prompt
    batch: int  # llm decode: sequences decoded together
    context: int  # llm decode: tokens already in the cache
    square: tuple[int, ...]  # square GEMM sizes
    seqs: tuple[int, ...]  # square attention lengths
    heads: int  # square attention heads
    square_tokens: int  # square attention batches B = square_tokens // S sequences (>= 1)
    models: int  # how many of MODELS the llm suite uses


SIZES = {
    ("cpu", False): Sizes(64, 1, 1024, (256, 512, 1024), (256, 512, 1024), 8, 1, 2),
    ("cpu", True): Sizes(32, 1, 256, (128, 256), (128, 256), 4, 1, 1),
    ("gpu", False): Sizes(4096, 16, 8192, (1024, 2048, 4096, 8192), (1024, 4096, 8192), 16,
                          16384, 2),
    ("gpu", True): Sizes(1024, 16, 2048, (1024, 4096), (1024, 4096), 16, 16384, 1),
}


def sizes(device_type: str, quick: bool) -> Sizes:
    return SIZES[("cpu" if device_type == "cpu" else "gpu", quick)]


def llm(s: Sizes) -> list[Case]:
    """Prefill and decode of each model's layer: the four projections and attention."""
    cases: list[Case] = []
    for model in MODELS[:s.models]:
        qkv = (model.heads + 2 * model.kv_heads) * model.head_dim
        projections = (("qkv", qkv, model.hidden), ("o", model.hidden, model.heads * model.head_dim),
                       ("gate_up", 2 * model.ffn, model.hidden), ("down", model.hidden, model.ffn))
        for phase, m in (("prefill", s.tokens), ("decode", s.batch)):
            for proj, n, k in projections:
                cases.append(GemmCase(m, n, k, name=f"{model.name} {phase} {proj}"))
        cases.append(AttentionCase(1, model.heads, model.kv_heads, s.tokens, s.tokens,
                                   model.head_dim, True, f"{model.name} prefill"))
        cases.append(AttentionCase(s.batch, model.heads, model.kv_heads, 1, s.context,
                                   model.head_dim, True, f"{model.name} decode"))
    return _dedupe(cases)


def square(s: Sizes) -> list[Case]:
    """``n×n×n`` GEMMs; attention over ``S`` tokens (batched up to 16k tokens on a GPU)."""
    cases: list[Case] = [GemmCase(n, n, n, layout="x @ w", name="square") for n in s.square]
    for seq in s.seqs:
        b = max(1, s.square_tokens // seq)
        cases += [AttentionCase(b, s.heads, s.heads, seq, seq, 128, causal, "square")
                  for causal in (False, True)]
    return cases


def _dedupe(cases: list[Case]) -> list[Case]:
    """One case per shape; names of the layers that share it are joined."""
    merged: dict[tuple, Case] = {}
    for case in cases:
        key = case.key()
        if key in merged:
            merged[key] = replace(merged[key], name=f"{merged[key].name}, {case.name}")
        else:
            merged[key] = case
    return list(merged.values())


_GEMM_FIELDS = {"m", "n", "k", "batch", "layout", "name"}
_ATTENTION_FIELDS = {"b", "hq", "hkv", "sq", "sk", "d", "causal", "name"}


def from_file(path: str | Path) -> list[Case]:
    """Cases from a JSON or YAML file::

        gemm:       [{m: 64, n: 4096, k: 4096}, {m: 1, n: 128, k: 64, batch: 8, layout: "x @ w"}]
        attention:  [{b: 1, hq: 32, hkv: 8, sq: 512, d: 128, causal: true}]

    ``batch`` (1), ``layout`` (``x @ w.t()``), ``name`` (""), ``b`` (1), ``hkv`` (``hq``),
    ``sk`` (``sq``) and ``causal`` (false) may be left out."""
    path = Path(path)
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ValueError(f"--shapes {path}: reading YAML needs PyYAML "
                             f"(pip install pyyaml), or give a .json file") from None
        data = yaml.safe_load(text)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--shapes {path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or not set(data) <= {"gemm", "attention"}:
        raise ValueError(f"--shapes {path}: expected a mapping with keys 'gemm' and/or "
                         f"'attention'")
    cases: list[Case] = []
    for op, fields, make in (("gemm", _GEMM_FIELDS, _gemm_case),
                             ("attention", _ATTENTION_FIELDS, _attention_case)):
        for i, item in enumerate(data.get(op) or []):
            where = f"--shapes {path}: {op}[{i}]"
            if not isinstance(item, dict) or not set(item) <= fields:
                extra = sorted(set(item) - fields) if isinstance(item, dict) else item
                raise ValueError(f"{where}: unexpected {extra!r} (fields: {sorted(fields)})")
            try:
                cases.append(make(item))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{where}: {exc}") from None
    return cases


def _positive(item: dict, name: str, default=None, minimum: int = 1) -> int:
    value = item.get(name, default)
    if value is None:
        raise ValueError(f"{name!r} is required")
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _gemm_case(item: dict) -> GemmCase:
    layout = item.get("layout", "x @ w.t()")
    if layout not in GEMM_LAYOUTS:
        raise ValueError(f"layout must be one of {GEMM_LAYOUTS}, got {layout!r}")
    return GemmCase(_positive(item, "m", minimum=0), _positive(item, "n", minimum=0),
                    _positive(item, "k", minimum=0), _positive(item, "batch", 1), layout,
                    str(item.get("name", "")))


def _attention_case(item: dict) -> AttentionCase:
    hq = _positive(item, "hq")
    hkv = _positive(item, "hkv", hq)
    if hq % hkv:
        raise ValueError(f"hkv {hkv} must divide hq {hq}")
    causal = item.get("causal", False)
    if not isinstance(causal, bool):
        raise ValueError(f"causal must be true or false, got {causal!r}")
    sq = _positive(item, "sq")
    return AttentionCase(_positive(item, "b", 1), hq, hkv, sq, _positive(item, "sk", sq),
                         _positive(item, "d"), causal, str(item.get("name", "")))


SUITES = {"llm": llm, "square": square}


def cases(op: str, shapes: str, device_type: str, quick: bool) -> list[Case]:
    """The cases of suite ``shapes`` (a name in ``SUITES`` or a file) for ``op``
    (``gemm``, ``attention`` or ``all``), sized for ``device_type``."""
    if shapes in SUITES:
        found = SUITES[shapes](sizes(device_type, quick))
    elif Path(shapes).is_file():
        found = from_file(shapes)
    else:
        raise ValueError(f"--shapes: expected one of {sorted(SUITES)} or an existing "
                         f"JSON/YAML file, got {shapes!r}")
    return [c for c in found if op in ("all", c.op)]
