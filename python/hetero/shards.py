"""Splitting a sweep (conformance cases, benchmark cases) into shards that run anywhere
— the GPUs of one host, the jobs of a CI matrix, a Slurm array — and checking the
shards' results add up to the whole sweep again.

A shard ``I/N`` takes the items whose position in the full, deterministic list is
``I`` modulo ``N``: shards are disjoint and their union is the list. Each shard's
result records the shard and the full list (its ids and hash), so merging can say what
is missing, duplicated or in conflict.
"""

from __future__ import annotations

from typing import Sequence, TypeVar

T = TypeVar("T")


def parse(text: str | None) -> tuple[int, int] | None:
    """``"1/4"`` -> ``(1, 4)``; ``None`` stays ``None``; ``ValueError`` for anything but
    ``I/N`` with ``0 <= I < N``."""
    if text is None:
        return None
    index, _, count = str(text).partition("/")
    try:
        shard = int(index), int(count)
    except ValueError:
        shard = None
    if shard is None or not 0 <= shard[0] < shard[1]:
        raise ValueError(f"--shard: expected I/N with 0 <= I < N (e.g. 0/2), got {text!r}")
    return shard


def select(items: Sequence[T], shard: tuple[int, int] | None) -> list[T]:
    """The items of ``shard`` (all of them for ``None``)."""
    if shard is None:
        return list(items)
    index, count = shard
    return [item for position, item in enumerate(items) if position % count == index]


def label(shard: tuple[int, int] | None) -> str | None:
    return None if shard is None else f"{shard[0]}/{shard[1]}"


def check(expected: Sequence[str], parts: Sequence[Sequence[str]]) -> dict:
    """How the ids of ``parts`` (one list per result file) cover ``expected``:
    ``{"missing": [...], "duplicated": [...]}`` (each id once, in ``expected``'s order,
    then unknown ids)."""
    seen: dict[str, int] = {}
    for ids in parts:
        for i in ids:
            seen[i] = seen.get(i, 0) + 1
    missing = [i for i in expected if i not in seen]
    duplicated = [i for i in expected if seen.get(i, 0) > 1]
    unknown = [i for i in seen if i not in set(expected)]
    return {"missing": missing, "duplicated": duplicated, "unknown": unknown}
