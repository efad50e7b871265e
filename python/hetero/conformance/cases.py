"""The conformance cases, as data: op × dtype × shape × layout × feature.

A :class:`Case` is plain data (JSON-friendly) and its ``id`` is stable, so reports from
different runs and machines line up. Each op brings its own cases through its
:class:`ConformanceSpec` (``hetero.ops.spec(op).conformance``); :func:`all_cases` lists
every registered op's: the fixed core every backend runs. A backend's own declarations
add the cases of :mod:`.declared`. :data:`VERSION` changes whenever a list or a check
changes; :func:`case_hash` fingerprints the exact list a report used.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

from ..ops import registry as op_registry

VERSION = "1.2"

DTYPES = ("float32", "float16", "bfloat16", "float64")


@dataclass(frozen=True)
class Case:
    """One conformance case.

    kind: ``"numeric"`` (run and check against float64) or ``"bad_input"`` (the op must
        raise ``expect`` — ``"TypeError"``/``"ValueError"`` — naming ``argument``).
    params: the op's sizes (gemm ``M, N, K``; attention ``B, Hq, Hkv, Sq, Sk, D, Dv``);
        for a bad input, ``what`` is wrong.
    layout: ``contiguous`` or a view the op's inputs are given as.
    features: what the case exercises (the op's features, ``nan``, ``inf``, ...).
    origin: ``core`` (the fixed list) or ``declared`` (derived from the backend's
        declared support, :mod:`.declared`).
    """

    op: str
    dtype: str
    params: dict
    layout: str = "contiguous"
    features: tuple[str, ...] = ()
    kind: str = "numeric"
    expect: str | None = None
    argument: str | None = None
    quick: bool = field(default=False, compare=False)
    origin: str = "core"

    @property
    def id(self) -> str:
        dims = "x".join(f"{k}{v}" for k, v in self.params.items())
        extra = "+".join(self.features) or "plain"
        if self.kind == "bad_input":
            return f"{self.op}/bad_input/{self.argument}/{dims}"
        return f"{self.op}/{self.dtype}/{dims}/{self.layout}/{extra}"

    def as_dict(self) -> dict:
        data = asdict(self)
        data.pop("quick")
        return {"id": self.id, **data}


@dataclass(frozen=True)
class ConformanceSpec:
    """What the suite needs from an op (``OpSpec.conformance``).

    numeric_cases: ``() -> [Case]``: the op's numeric cases, ``quick`` marking the
        quick subset.
    inputs: ``inputs(case) -> (args, kwargs)``: the op's arguments for a numeric case,
        seeded random data (:func:`case_seed`), never zeros; ``kwargs`` may hold an
        ``out`` tensor (then that is the output checked).
    bad_inputs: ``[(argument, expected exception name, what)]``: calls the op must
        refuse before any kernel runs, with a message that starts with the argument.
    bad_input: ``bad_input(case) -> (args, kwargs)`` for one of them
        (``case.params["what"]``: ``what`` with spaces made underscores).
    declared_case: ``declared_case(dtype, values, features, limits) -> Case or None``:
        a small numeric case in ``dtype`` using exactly ``features`` (op feature names),
        with the traits or sizes in ``values`` (``{"head_dim": 72}``, ``{"K": 4096}``)
        and every other limited one at an allowed value (``limits``: the kernel's
        ``{name: Range}``); ``None`` when no such case can be built (a feature the op
        cannot combine, sizes beyond what the suite allocates). Without it, the suite
        derives no cases for the op from declarations.

    The values are judged against the op's ``reference`` within its ``error_bound``.
    """

    numeric_cases: Callable[[], list[Case]]
    inputs: Callable[[Case], tuple[tuple, dict]]
    bad_inputs: Sequence[tuple[str, str, str]] = ()
    bad_input: Callable[[Case], tuple[tuple, dict]] | None = None
    declared_case: Callable[..., Case | None] | None = None

    def bad_input_cases(self, op: str) -> list[Case]:
        return [Case(op, "float32", {"what": what.replace(" ", "_")}, kind="bad_input",
                     expect=expect, argument=argument, quick=True)
                for argument, expect, what in self.bad_inputs]


#: A case derived from a declaration allocates at most this many elements for its
#: inputs and output together.
MAX_ELEMENTS = 1 << 23


def declared_sizes(values: dict, limits: dict, defaults: Sequence[tuple[str, int]]
                   ) -> dict | None:
    """For a case derived from a declaration: each size in ``values``, else the allowed
    value (``limits``) nearest its default; ``None`` where a size has no allowed value."""
    sizes = {}
    for name, default in defaults:
        value = values.get(name)
        if value is None:
            value = limits[name].nearest(default) if name in limits else default
        if value is None:
            return None
        sizes[name] = value
    return sizes


def case_seed(case: Case) -> int:
    """The seed of a case's random inputs (stable across runs and machines)."""
    return zlib.crc32(case.id.encode()) % 100_000


def all_cases(quick: bool = False, ops: Sequence[str] | None = None) -> list[Case]:
    """Every case of this suite version for the registered ops (or those named in
    ``ops``) — numeric cases op by op, then bad inputs — in a fixed order; ``quick``:
    the marked subset."""
    chosen = [s for s in op_registry.specs() if s.conformance is not None
              and (ops is None or s.name in ops)]
    cases = [c for s in chosen for c in s.conformance.numeric_cases()]
    cases += [c for s in chosen for c in s.conformance.bad_input_cases(s.name)]
    return [c for c in cases if c.quick or not quick]


def case_hash(cases: list[Case]) -> str:
    """sha256 of the case list (ids and parameters), to tell lists apart in reports."""
    text = json.dumps([c.as_dict() for c in cases], sort_keys=True)
    return hashlib.sha256(f"{VERSION}\n{text}".encode()).hexdigest()
