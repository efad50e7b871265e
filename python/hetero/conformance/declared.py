"""Cases derived from what a backend declares, and the coverage of its declaration.

The fixed list (:mod:`.cases`) is the must-pass core, the same for every backend. A
backend may declare more than that list reaches — head dims off the 16-grid, Dv != D, a
maximum K — and a declaration nothing checks is a claim, not a result. So the suite
derives more cases from each of the backend's kernels' :class:`~hetero.Support`:

- every declared dtype with every declared feature (one feature per case);
- every declared limit (``head_dim``, ``K``, ``Sk``...): both ends in every declared
  dtype, and inside the range every allowed value near its low end (below 16 where
  declared, odd ones where the multiple is 1), the allowed values either side of each
  power of two, and a few seeded at random — each in one dtype, taken in turn.

The random values are seeded by the backend's name and the suite version
(:func:`seed`), so a report's derived cases can be built again exactly; their ids name
their values.

Coverage: the declared items — each dtype, each feature, each finite end of each
limit, per op — and which of them some passing case exercised (what dispatch saw of
the call, not what the case meant to test). A run that leaves a declared item
unexercised is *incomplete*, never conformant.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, replace

from ..kernel import limit_names, limited_value
from ..ops import registry as op_registry
from ..ops._checks import dtype_name
from .cases import DTYPES, VERSION, Case

#: Inside a range: every allowed value from its low end up to this many steps.
LOW_STEPS = 16
#: Inside a range: this many values drawn at random (the quick subset: one).
RANDOM_VALUES = 3
#: Values above this are tried at the declared maximum only.
LARGEST_INSIDE = 1 << 12


@dataclass(frozen=True)
class Item:
    """One declared capability: ``kind`` is ``dtype``, ``feature`` or a limited trait
    or size name; ``value`` the dtype's name, the feature, or the limit's end."""

    op: str
    kind: str
    value: str | int
    end: str = ""  # "min"/"max" for a limit's end

    @property
    def label(self) -> str:
        return f"{self.op} {self.kind} {self.value}" + (f" ({self.end})" if self.end else "")


def seed(backend: str) -> int:
    """The seed of ``backend``'s random derived values (stable across runs)."""
    return zlib.crc32(f"{backend}/{VERSION}".encode())


def _kernels(entry) -> dict[str, list]:
    """The backend's kernels by op, for the ops registered with derivable cases."""
    return {op: kernels for op, kernels in entry.kernels.items()
            if (spec := op_registry.get(op)) is not None and spec.conformance is not None}


def declared_items(entry) -> list[Item]:
    """What the backend ``entry`` (a :class:`hetero.registry.BackendEntry`) declares, per
    op: the union over its kernels."""
    items: dict[Item, None] = {}
    for op, kernels in _kernels(entry).items():
        for kernel in kernels:
            support = kernel.support
            for dtype in sorted(map(dtype_name, support.dtypes)):
                if dtype in DTYPES:
                    items[Item(op, "dtype", dtype)] = None
            for feature in sorted(support.features):
                items[Item(op, "feature", feature)] = None
            for name, allowed in support.limits.items():
                low, high = allowed.ends()
                if allowed.min is not None and low is not None:
                    items[Item(op, name, low, "min")] = None
                if high is not None:
                    items[Item(op, name, high, "max")] = None
    return list(items)


def exercised_items(op: str, traits) -> set[Item]:
    """The items one passing call exercised, from the traits dispatch saw."""
    out = {Item(op, "dtype", dtype_name(traits.dtype))}
    out |= {Item(op, "feature", f) for f in traits.features}
    for name in limit_names(type(traits)):
        value = limited_value(traits, name)
        if type(value) is int:
            out |= {Item(op, name, value, "min"), Item(op, name, value, "max")}
    return out


def limit_values(allowed, rng: random.Random, quick: bool) -> list[tuple[int, bool]]:
    """``(value, at an end)`` for one declared :class:`~hetero.Range`: its ends, the
    allowed values near its low end and either side of powers of two, and random ones
    (fewer with ``quick``)."""
    step = allowed.multiple
    low, high = allowed.ends()
    start = low if low is not None else step
    top = min(high if high is not None else LARGEST_INSIDE, LARGEST_INSIDE)
    inside = set(range(start, min(top, start + (2 if quick else LOW_STEPS) * step) + 1, step))
    power = 2
    while power <= top * 2 and not quick:
        inside |= {power - step, power + step}
        power *= 2
    for _ in range(1 if quick else RANDOM_VALUES):
        if top >= start:
            inside.add(rng.randrange(start // step, top // step + 1) * step)
    if high is not None and high - step >= start:
        inside.add(high - step)
    ends = {v for v in (low, high) if v is not None}
    values = {v for v in inside if allowed.allows(v) and v <= LARGEST_INSIDE} | ends
    return [(v, v in ends) for v in sorted(values)]


def cases(entry, quick: bool = False, core: list[Case] | None = None) -> list[Case]:
    """The cases derived from ``entry``'s declarations (those with the id of a case in
    ``core`` left out: that case runs already). ``quick``: the ends of every limit and
    fewer values inside."""
    rng = random.Random(seed(entry.name))
    taken = {c.id for c in core or ()}
    out: dict[str, Case] = {}
    shapes: set[tuple] = set()  # inside values: one dtype per shape is enough

    def add(case, inside=False):
        if case is None or case.id in taken or case.id in out:
            return
        shape = (case.op, tuple(case.params.items()), case.features)
        if not (inside and shape in shapes):
            shapes.add(shape)
            out[case.id] = replace(case, origin="declared", quick=quick)

    for op, kernels in _kernels(entry).items():
        build = op_registry.spec(op).conformance.declared_case
        if build is None:
            continue
        for kernel in kernels:
            support = kernel.support
            dtypes = [d for d in sorted(map(dtype_name, support.dtypes)) if d in DTYPES]
            if not dtypes:
                continue  # nothing the suite has inputs for
            for dtype in dtypes:
                for feature in sorted(support.features):
                    add(build(dtype, {}, frozenset({feature}), support.limits))
            turn = 0
            for name, allowed in support.limits.items():
                for value, at_end in limit_values(allowed, rng, quick):
                    chosen = dtypes if at_end else dtypes[turn % len(dtypes):][:1]
                    turn += not at_end
                    for dtype in chosen:
                        add(build(dtype, {name: value}, frozenset(), support.limits),
                            inside=not at_end)
    return list(out.values())


def coverage(declared: list[Item], exercised: set[Item]) -> dict:
    """``{"declared": n, "exercised": n, "missing": [labels]}``."""
    missing = [item.label for item in declared if item not in exercised]
    return {"declared": len(declared), "exercised": len(declared) - len(missing),
            "missing": missing}

