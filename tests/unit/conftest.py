"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def python_path_calls_of(monkeypatch):
    """``watch(api)``: the list of calls that reach ``api.prepare`` (a public function's
    Python path) from then on, for tests of what a native entry serves by itself."""
    def watch(api):
        calls = []
        original = api.prepare

        def counting(*args):
            calls.append(args)
            return original(*args)

        monkeypatch.setattr(api, "prepare", counting)
        return calls
    return watch
