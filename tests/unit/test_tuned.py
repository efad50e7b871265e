"""The tuned table: buckets, the file format, and how dispatch uses it."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

import hetero
from hetero import HeteroConfigWarning, dispatch, fingerprint, tuned
from hetero.tuned import Entry, Table


@pytest.fixture
def table_in_use():
    """``table_in_use(table)`` sets a tuned table for one test."""
    def use(table):
        hetero.set_tuned_table(table)
    yield use
    hetero.set_tuned_table(None)


def _entry(kernel, bucket=(8, 8, 8, 0), dtype="float32", op="gemm"):
    return Entry(tuned.device_name(torch.device("cpu")), op, dtype, bucket, kernel, 1e-3,
                 "cpu.gemm", 2e-3)


def test_buckets_round_up_to_powers_of_two():
    assert [tuned.pow2_ceil(n) for n in (0, 1, 2, 3, 64, 65)] == [0, 1, 2, 4, 64, 128]
    assert tuned.bucket(5, 7, 6) == (8, 8, 8)
    assert tuned.bucket(1, 1000) == (1, 1024)
    assert tuned.bucket_label("gemm", (8, 8, 8, 1)) == "M≤8 N≤8 K≤8 layout 1"


def test_table_file_round_trip(tmp_path):
    table = Table([_entry("reference.torch")], created="now")
    loaded = tuned.load(table.save(tmp_path / "d" / "t.json"))
    assert loaded.entries == table.entries and loaded.path == str(tmp_path / "d" / "t.json")


@pytest.mark.parametrize("data, message", [
    ({"format": "other"}, "expected format 'hetero-tuned/3'"),
    ({"format": "hetero-tuned/1", "entries": [{"op": "gemm"}]}, "entry 0 is malformed"),
    ({"format": "hetero-tuned/3", "entries": [dict(
        device="x", op="gemm", dtype="float32", bucket=[1, 2], kernel="cpu.gemm",
        median_s=1.0)]}, "entry 0 is malformed"),
])
def test_malformed_tables_are_refused(tmp_path, data, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        hetero.set_tuned_table(str(path))
    assert hetero.tuned_table() is None


def test_the_table_changes_the_decision_for_its_bucket_only(table_in_use):
    a, b = torch.randn(5, 6), torch.randn(6, 7)
    assert hetero.explain("gemm", a, b).chosen.qualname == "cpu.gemm"
    table_in_use(Table([_entry("reference.torch")], path="test-table"))
    decision = hetero.explain("gemm", a, b)
    assert decision.chosen.qualname == "reference.torch" and decision.tuned_choice
    assert not decision.fallback  # a tuned preference is not a fallback
    text = str(decision)
    assert "tuned table test-table: reference.torch fastest correct for gemm float32 " \
           "M≤8 N≤8 K≤8 layout 0" in text and "chosen by the tuned table" in text
    with hetero.use(policy="error"), warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.testing.assert_close(hetero.gemm(a, b), a @ b)  # runs, no fallback raised
    assert hetero.explain("gemm", torch.randn(50, 6), b).chosen.qualname == "cpu.gemm"
    assert hetero.explain("gemm", a, b.t().contiguous().t()).chosen.qualname == "cpu.gemm"
    assert hetero.explain("gemm", a.half(), b.half()).chosen.qualname == "cpu.gemm"
    # a request by name beats the table
    assert hetero.explain("gemm", a, b, backend="cpu").chosen.qualname == "cpu.gemm"
    with hetero.use("cpu", "*"):
        assert hetero.explain("gemm", a, b).chosen.qualname == "cpu.gemm"


def test_an_entry_that_cannot_serve_the_call_is_passed_over(table_in_use):
    table_in_use(Table([_entry("cpu.gemm", dtype="float64")]))
    a, b = torch.randn(5, 6, dtype=torch.float64), torch.randn(6, 7, dtype=torch.float64)
    decision = hetero.explain("gemm", a, b)
    assert decision.chosen.qualname == "torch.matmul" and not decision.tuned_choice
    assert "not used: that kernel cannot serve this call" in str(decision)


def test_attention_buckets(table_in_use):
    q, k = torch.randn(1, 2, 3, 16), torch.randn(1, 2, 30, 16)
    table_in_use(Table([_entry("reference.torch", bucket=(2, 4, 32, 16), op="attention")]))
    assert hetero.explain("attention", q, k, k).chosen.qualname == "reference.torch"
    assert tuned.bucket_label("attention", (2, 4, 32, 16)) == "BH≤2 Sq≤4 Sk≤32 D≤16"
    # another key length, batch x heads or head dim is another bucket
    for q_, k_ in ((q, k[:, :, :10]), (q.expand(3, -1, -1, -1), k.expand(3, -1, -1, -1)),
                   (torch.randn(1, 2, 3, 32), torch.randn(1, 2, 30, 32))):
        assert hetero.explain("attention", q_, k_, k_).chosen.qualname == "cpu.flash"
    assert dispatch.wants_bucket == {"gemm": False, "attention": True, "scaled_gemm": False,
                                     "varlen_attention": False, "paged_attention": False}


def test_entries_of_an_earlier_bucket_layout_are_dropped(tmp_path):
    old = Table([_entry("reference.torch"),
                 _entry("reference.torch", bucket=(4, 32), op="attention")]).as_dict()
    path = tmp_path / "t.json"
    path.write_text(json.dumps(dict(old, format="hetero-tuned/2")))
    assert [e.op for e in tuned.load(path).entries.values()] == ["gemm"]


def test_the_environment_picks_the_table(hetero_env, tmp_path):
    path = Table([_entry("reference.torch")]).save(tmp_path / "t.json")
    hetero_env(HETERO_TUNED=str(path))
    assert hetero.tuned_table().path == str(path)
    assert hetero.info()["tuned_table"] == {"path": str(path), "entries": 1, "fingerprint": None}
    hetero_env(HETERO_TUNED="off")
    assert hetero.tuned_table() is None
    path.write_text("not json")
    with pytest.warns(HeteroConfigWarning, match="cannot read a tuned table"):
        hetero_env(HETERO_TUNED=str(path))
    assert hetero.tuned_table() is None


def test_the_default_location_is_used_when_present(hetero_env, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    digest = fingerprint.digest(fingerprint.current())
    assert tuned.default_path() == tmp_path / "hetero" / f"tuned-{digest}.json"
    Table([_entry("reference.torch")]).save(tuned.default_path())
    hetero_env(HETERO_TUNED="")  # unset: the default location
    assert hetero.tuned_table().path == str(tuned.default_path())
    hetero_env()
    assert hetero.tuned_table() is None
