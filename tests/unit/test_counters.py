"""hetero.stats(): the FLOP formulas and the snapshot's arithmetic."""

from __future__ import annotations

import pytest
import torch

import hetero
from hetero import counters


@pytest.mark.parametrize("sq,sk", [(1, 1), (5, 5), (3, 8), (8, 3), (7, 1), (1, 9)])
@pytest.mark.parametrize("causal", [False, True])
def test_attention_flops_count_visible_pairs(sq, sk, causal):
    visible = torch.ones(sq, sk, dtype=torch.bool)
    if causal:
        visible = visible.tril(sk - sq)  # bottom-right, as hetero's causal
    pairs = int(visible.sum())
    assert counters.attention_flops(6, sq, sk, 16, 8, causal) == 2 * 6 * pairs * (16 + 8)


def test_gemm_flops():
    assert counters.gemm_flops(3, 5, 7, batch=2) == 2 * 2 * 3 * 5 * 7


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
