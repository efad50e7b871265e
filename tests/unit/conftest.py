"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def python_path_calls_of(monkeypatch):
    """``watch(module, name="prepare")``: the list of calls that reach ``module.<name>``
    (``api.prepare``: a public function's Python path; ``torch_op._serve``: a torch
    operator's Python kernel) from then on, for tests of what a native entry serves by
    itself."""
    def watch(module, name: str = "prepare"):
        calls = []
        original = getattr(module, name)

        def counting(*args):
            calls.append(args)
            return original(*args)

        monkeypatch.setattr(module, name, counting)
        return calls
    return watch
