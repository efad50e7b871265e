"""Fixtures for the harness tests: backends with known behaviour and a tiny shape file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from hetero import registry

FIXTURES = Path(__file__).parent.parent / "fixtures"


@pytest.fixture
def bench_backends():
    """Registers ``sleepy``, ``fastwrong``, ``gemmonly`` and ``broken``
    (tests/fixtures/bench_backends.py) for one test."""
    sys.path.insert(0, str(FIXTURES))
    try:
        import bench_backends as module
        made = module.backends()
        for backend in made:
            registry.register(backend)
        yield {b.name: b for b in made}
    finally:
        for backend in made:
            registry.unregister(backend.name)
        sys.path.remove(str(FIXTURES))


@pytest.fixture
def tiny_shapes(tmp_path) -> str:
    """Two GEMMs in different buckets and one causal GQA attention, all small."""
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps({
        "gemm": [{"m": 96, "n": 80, "k": 72, "name": "a"},
                 {"m": 9, "n": 40, "k": 24, "layout": "x @ w", "name": "b"}],
        "attention": [{"b": 2, "hq": 4, "hkv": 2, "sq": 24, "sk": 40, "d": 16,
                       "causal": True}]}))
    return str(path)
