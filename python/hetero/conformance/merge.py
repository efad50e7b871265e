"""Conformance reports merged: the shards of one sweep (``hetero conformance --shard
I/N``, any number of machines) become one verdict — given only when the shards add up to
the whole case list (:mod:`hetero.shards`). ``hetero report`` calls :func:`merge` for
the conformance JSON files it is given.
"""

from __future__ import annotations

from collections import Counter

from .. import shards
from .checks import CRASH, FAIL, PASS
from .runner import CONFORMANT, INCOMPLETE, NOT_CONFORMANT, NOT_RUN, STATUSES

NO_VERDICT = "no verdict"


def is_report(doc: dict) -> bool:
    """Whether ``doc`` is a ``hetero conformance --json`` report."""
    return isinstance(doc, dict) and "suite_version" in doc and "results" in doc


def merge(docs: list[dict]) -> list[dict]:
    """One merged sweep per backend, suite version, quick flag and case list: ``{backend,
    suite_version, quick, files, shards, counts, coverage, missing, duplicated,
    conflicting, verdict, why}``."""
    groups: dict[tuple, list[dict]] = {}
    for doc in docs:
        key = (doc["backend"], doc["suite_version"], doc["quick"],
               doc.get("all_case_hash") or doc["case_hash"])
        groups.setdefault(key, []).append(doc)
    return [_merged(parts) for parts in groups.values()]


def _merged(parts: list[dict]) -> dict:
    first = parts[0]
    expected = first.get("all_case_ids") or [r["id"] for r in first["results"]]
    found = shards.check(expected, [[r["id"] for r in p["results"]] for p in parts])
    by_id: dict[str, dict] = {}
    conflicting = []
    for part in parts:
        for r in part["results"]:
            if r["id"] in by_id and by_id[r["id"]]["status"] != r["status"]:
                conflicting.append(r["id"])
            by_id.setdefault(r["id"], r)
    counts = Counter(r["status"] for r in by_id.values())
    exercised = {label for r in by_id.values() for label in r.get("exercised", ())}
    declared = first.get("declared_items", [])
    missing_items = [label for label in declared if label not in exercised]
    ran = any(r["status"] == PASS and r["kind"] == "numeric" for r in by_id.values())
    verdict, why = _verdict(parts, found, conflicting, counts, missing_items, ran)
    return {"backend": first["backend"], "suite_version": first["suite_version"],
            "quick": first["quick"], "shards": [p.get("shard") or "all" for p in parts],
            "cases": len(expected), "counts": {s: counts.get(s, 0) for s in STATUSES},
            "coverage": {"declared": len(declared),
                         "exercised": len(declared) - len(missing_items),
                         "missing": missing_items},
            "missing": found["missing"], "duplicated": found["duplicated"],
            "unknown": found["unknown"], "conflicting": conflicting,
            "verdict": verdict, "why": why}


def _verdict(parts, found, conflicting, counts, missing_items, ran) -> tuple[str, str]:
    if any(p["verdict"] == NOT_RUN for p in parts):
        return NOT_RUN, "a shard did not run (the backend was unavailable there)"
    if found["missing"] or found["unknown"] or conflicting:
        return NO_VERDICT, (f"the shards do not add up to the sweep: "
                            f"{len(found['missing'])} cases missing, "
                            f"{len(found['unknown'])} not in its case list, "
                            f"{len(conflicting)} with conflicting results")
    if counts.get(FAIL) or counts.get(CRASH):
        return NOT_CONFORMANT, f"{counts.get(FAIL, 0)} Fail, {counts.get(CRASH, 0)} Crash"
    if not ran or missing_items:
        return INCOMPLETE, ("no numeric case ran a kernel" if not ran else
                            f"never exercised: {', '.join(missing_items)}")
    return CONFORMANT, "every case Pass or NotSupported by the declaration"


def markdown(merged: list[dict]) -> str:
    lines = ["# Conformance, merged", ""]
    for m in merged:
        lines += [f"## `{m['backend']}` — **{m['verdict']}**", "",
                  f"Suite {m['suite_version']} ({'quick' if m['quick'] else 'full'}), "
                  f"{m['cases']} cases, from {len(m['shards'])} file(s) (shards "
                  f"{', '.join(map(str, m['shards']))}); " +
                  ", ".join(f"{n} {s}" for s, n in m["counts"].items()) +
                  f". {m['why'][0].upper()}{m['why'][1:]}.", "",
                  f"Coverage of the declared support: {m['coverage']['exercised']} of "
                  f"{m['coverage']['declared']} items exercised.", ""]
        for name in ("missing", "duplicated", "unknown", "conflicting"):
            if m[name]:
                shown = ", ".join(f"`{i}`" for i in m[name][:10])
                more = f" and {len(m[name]) - 10} more" if len(m[name]) > 10 else ""
                lines += [f"- {len(m[name])} {name} cases: {shown}{more}"]
        lines.append("")
    return "\n".join(lines)
