"""HETERO_* parsing, and the table in docs/usage.md staying in sync with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from hetero import env
from hetero.errors import HeteroConfigWarning


def test_defaults():
    assert env.read({}) == env.Settings(backends=None, fallback="warn")


def test_backend_list_and_policies():
    s = env.read({"HETERO_BACKENDS": " triton, cuda ,*,", "HETERO_FALLBACK": "SILENT"})
    assert s == env.Settings(backends=("triton", "cuda", "*"), fallback="silent")
    assert env.read({"HETERO_STRICT": "1", "HETERO_FALLBACK": "silent"}).fallback == "error"
    assert env.read({"HETERO_STRICT": "0"}).fallback == "warn"


def test_malformed_strict_is_reported():
    with pytest.warns(HeteroConfigWarning, match="HETERO_STRICT='maybe' is not 0 or 1"):
        assert env.read({"HETERO_STRICT": "maybe"}).fallback == "warn"


def test_num_threads_is_a_positive_integer_or_reported():
    assert env.read({}).num_threads is None
    assert env.read({"HETERO_NUM_THREADS": " 3 "}).num_threads == 3
    for bad in ("0", "-2", "four"):
        with pytest.warns(HeteroConfigWarning, match=f"HETERO_NUM_THREADS='{bad}' is not a positive"):
            assert env.read({"HETERO_NUM_THREADS": bad}).num_threads is None


def test_unknown_variable_without_close_match_is_still_reported():
    with pytest.warns(HeteroConfigWarning, match="unknown environment variable HETERO_ZZZ"):
        env.read({"HETERO_ZZZ": "1", "PATH": "/bin"})


def test_usage_doc_table_matches_the_code():
    usage = (Path(__file__).parents[2] / "docs" / "usage.md").read_text()
    for name, (meaning, example) in env.VARIABLES.items():
        assert f"| `{name}` | {meaning} | `{example}` |" in usage, name
