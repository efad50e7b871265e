"""Benchmark suites as data: the models and sizes behind the named suites (``llm``,
``square``), and shape files.

A case is one problem shape of one op; the harness runs it in every requested dtype on
every backend. Each op brings its own cases (``OpSpec.bench``,
:class:`~hetero.bench.work.BenchSpec`): for each suite it takes part in, a function of
the :class:`Sizes` for the device. FLOPs and the minimum bytes moved (each operand read
once, the result written once) are properties of the case, so every backend is
measured against the same count.

The ``llm`` suite takes its shapes from the layers of two 7–8B models (:data:`MODELS`),
for a prefill of ``tokens`` tokens and a decode step of ``batch`` sequences with
``context`` cached tokens; sizes scale with the device (a CPU gets a short prompt).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ..ops import registry as op_registry


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


def _benchmarked(op: str = "all") -> list:
    """The specs of the registered ops with benchmark cases (``op``: one of them, or
    ``"all"``)."""
    return [s for s in op_registry.specs() if s.bench is not None and op in ("all", s.name)]


def suite_names() -> list[str]:
    """The suites some registered op takes part in."""
    return sorted({name for s in _benchmarked() for name in s.bench.suites})


def from_file(path: str | Path) -> list:
    """Cases from a JSON or YAML file mapping op names to lists of cases::

        gemm:       [{m: 64, n: 4096, k: 4096}, {m: 1, n: 128, k: 64, batch: 8, layout: "x @ w"}]
        attention:  [{b: 1, hq: 32, hkv: 8, sq: 512, d: 128, causal: true}]

    Each op's ``case_from`` says which fields it takes and their defaults (gemm:
    ``batch`` 1, ``layout`` ``x @ w.t()``, ``name`` ""; attention: ``b`` 1, ``hkv`` =
    ``hq``, ``sk`` = ``sq``, ``causal`` false)."""
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
    known = {s.name: s for s in _benchmarked()}
    if not isinstance(data, dict) or not set(data) <= set(known):
        raise ValueError(f"--shapes {path}: expected a mapping with keys among "
                         f"{sorted(known)}")
    cases = []
    for op, items in data.items():
        for i, item in enumerate(items or []):
            where = f"--shapes {path}: {op}[{i}]"
            if not isinstance(item, dict):
                raise ValueError(f"{where}: expected a mapping, got {item!r}")
            try:
                cases.append(known[op].bench.case_from(item))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{where}: {exc}") from None
    return cases


def cases(op: str, shapes: str, device_type: str, quick: bool) -> list:
    """The cases of suite ``shapes`` (a suite name or a file) for ``op`` (an op's name or
    ``all``), sized for ``device_type``."""
    if shapes in suite_names():
        size = sizes(device_type, quick)
        found = [c for s in _benchmarked() if shapes in s.bench.suites
                 for c in s.bench.suites[shapes](size)]
    elif Path(shapes).is_file():
        found = from_file(shapes)
    else:
        raise ValueError(f"--shapes: expected one of {suite_names()} or an existing "
                         f"JSON/YAML file, got {shapes!r}")
    return [c for c in found if op in ("all", c.op)]
