"""The conformance suite as pytest tests (see conftest.py for the options)."""

from __future__ import annotations

import pytest

from .checks import NOT_SUPPORTED, PASS


def test_case(conformance_case, conformance_session):
    result = conformance_session.judge(conformance_case)
    if result.status == NOT_SUPPORTED:
        pytest.skip(f"declared unsupported: {result.detail}")
    if result.status != PASS:
        pytest.fail(f"{result.status}: {result.detail}", pytrace=False)
