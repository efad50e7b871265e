"""hetero.stats(): the snapshot's arithmetic and its table."""

from __future__ import annotations

import pytest

import hetero
from hetero import counters


def test_snapshot_fraction_table_and_reset():
    counters.record("gemm", "cpu.gemm", 90.0)
    counters.record("gemm", "cpu.gemm", 0.0)
    counters.record_fallback("attention", "head dim 300", 10.0)
    snap = hetero.stats()
    counters.record("gemm", "cpu.gemm", 1e9)  # a snapshot does not change afterwards
    assert snap.served["gemm"]["cpu.gemm"].calls == 2
    assert snap.flops() == 90.0 and snap.flops(served=False) == 10.0
    assert snap.served_fraction() == pytest.approx(0.9)
    assert snap.served_fraction("gemm") == 1.0 and snap.served_fraction("attention") == 0.0
    text = str(snap)
    assert "cpu.gemm" in text and "PyTorch: head dim 300" in text and "90.0%" in text
    hetero.reset_stats()
    assert hetero.stats().served_fraction() == 1.0 and not hetero.stats().served
