"""The ``planted`` fixture: judge a backend from tests/fixtures/planted_bugs.py by the
quick suite."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import hetero.conformance as conformance
from hetero import registry

FIXTURES = Path(__file__).parent.parent / "fixtures"


@pytest.fixture(scope="module")
def planted():
    """``planted(name, isolate=True, ops=None)`` -> the quick suite's report (on
    ``ops``, default all) on backend ``name``
    of ``planted_bugs`` (unregistered again after the module's tests)."""
    sys.path.insert(0, str(FIXTURES))
    judged = []

    def judge(name, isolate=True, ops=None):
        judged.append(name)
        return conformance.run(name, quick=True, plugins=[f"planted_bugs:{name}"],
                               progress=False, timeout=120, isolate=isolate, ops=ops)

    yield judge
    sys.path.remove(str(FIXTURES))
    for name in judged:  # run() registered them in this process too
        registry.unregister(name)
