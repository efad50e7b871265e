"""Calls PyTorch computes under enable() are decided once per signature, then go straight
to PyTorch — counted as the first was, never reused across a different signature or
after anything that can change a decision."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

import hetero
from hetero import dispatch
from hetero.testing import randn

ENABLE = sys.modules["hetero.enable"]


@pytest.fixture(autouse=True)
def _fresh():
    dispatch.clear_cache()


def _served(op="gemm"):
    return {k: c.calls for k, c in hetero.stats().served.get(op, {}).items()}


def test_a_call_pytorch_serves_is_decided_once_and_counted_each_time(monkeypatch):
    x, w = randn(3, 8), randn(5, 8)
    hetero.reset_stats()
    with hetero.enabled(native=False), hetero.use("torch"):
        first = F.linear(x, w)
        assert len(dispatch.passthrough) == 1
        def routed_again(*args):
            raise AssertionError("the call was routed again")
        monkeypatch.setattr(ENABLE, "bind", routed_again)
        again = F.linear(x, w)
    assert torch.equal(first, again) and torch.equal(first, x @ w.t())
    assert _served() == {"torch.matmul": 2}


def test_fallbacks_are_counted_with_their_reason_every_time():
    x = torch.ones(3, 8, dtype=torch.int64)
    hetero.reset_stats()
    with hetero.enabled(native=False):
        for _ in range(3):
            F.linear(x, x)
    (reason, count), = hetero.stats().fallbacks["gemm"].items()
    assert count.calls == 3 and "int64" in reason


def test_another_signature_is_decided_afresh():
    with hetero.enabled(native=False), hetero.use("torch"):
        F.linear(randn(3, 8), randn(5, 8))
        F.linear(randn(4, 8), randn(5, 8))  # shape
        F.linear(randn(3, 8).bfloat16(), randn(5, 8).bfloat16())  # dtype
        F.linear(randn(8, 3).t(), randn(5, 8))  # strides
        F.linear(randn(3, 8).requires_grad_(), randn(5, 8))  # autograd
        signatures = len(dispatch.passthrough)
    assert signatures == 5
    with hetero.enabled(native=False):  # another scope: the default order, which serves it natively
        F.linear(randn(3, 8), randn(5, 8))
    assert "cpu.gemm" in _served() or len(dispatch.passthrough) == 6


def test_anything_that_can_change_a_decision_clears_them():
    with hetero.enabled(native=False), hetero.use("torch"):
        F.linear(randn(3, 8), randn(5, 8))
    assert dispatch.passthrough
    hetero.set_fallback_policy("silent")
    try:
        assert not dispatch.passthrough
    finally:
        hetero.set_fallback_policy(None)
