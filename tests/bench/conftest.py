"""Fixtures for the harness tests: a tiny shape file (the backends with known behaviour
are in tests/conftest.py)."""

from __future__ import annotations

import json

import pytest


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
