"""Shards: disjoint, together the whole list, and the argument checked."""

from __future__ import annotations

import pytest

from hetero import shards


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_shards_are_disjoint_and_add_up_to_the_list(count):
    items = list(range(23))
    parts = [shards.select(items, (i, count)) for i in range(count)]
    assert sorted(x for p in parts for x in p) == items
    assert shards.check([str(x) for x in items], [[str(x) for x in p] for p in parts]) == \
        {"missing": [], "duplicated": [], "unknown": []}


def test_a_missing_or_repeated_shard_is_named():
    ids = [str(x) for x in range(6)]
    zero, one = shards.select(ids, (0, 2)), shards.select(ids, (1, 2))
    assert shards.check(ids, [zero])["missing"] == one
    assert shards.check(ids, [zero, one, zero])["duplicated"] == zero
    assert shards.check(ids, [zero, one, ["x"]])["unknown"] == ["x"]


@pytest.mark.parametrize("text", ["2/2", "-1/2", "a/b", "1", "0/0"])
def test_a_bad_shard_is_refused_naming_the_option(text):
    with pytest.raises(ValueError, match="^--shard: expected I/N"):
        shards.parse(text)
    assert shards.parse("1/3") == (1, 3) and shards.parse(None) is None
