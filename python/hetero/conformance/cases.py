"""The conformance cases, as data: op × dtype × shape × layout × feature.

A :class:`Case` is plain data (JSON-friendly) and its ``id`` is stable, so reports from
different runs and machines line up. :data:`VERSION` changes whenever the list or a
check changes; :func:`case_hash` fingerprints the exact list a report used.

Shapes include 1, primes, non-multiples of 8/16/64, a large K and empty tensors;
layouts include transposed, strided and offset views; attention covers causal with
Sq < Sk and Sq > Sk, GQA/MQA, bool and additive masks with fully masked rows, explicit
and default scales, and head dims 16–256 including 80/96/112/160/192.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

VERSION = "1.0"

DTYPES = ("float32", "float16", "bfloat16", "float64")


@dataclass(frozen=True)
class Case:
    """One conformance case.

    kind: ``"numeric"`` (run and check against float64) or ``"bad_input"`` (the op must
        raise ``expect`` — ``"TypeError"``/``"ValueError"`` — naming ``argument``).
    params: gemm ``M, N, K`` (+ ``batch``), attention ``B, Hq, Hkv, Sq, Sk, D, Dv``.
    layout: ``contiguous`` or a view: gemm ``a.T``, ``b.T``, ``both.T``, ``sliced``,
        ``offset``; attention ``bshd`` (``(B, S, H, D)`` storage seen transposed),
        ``offset``.
    features: gemm ``bias``, ``batch``, ``float32_out``, ``nan``, ``inf``; attention ``causal``,
        ``mask_bool``, ``mask_additive``, ``scale``, ``nan``.
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


# ---------------------------------------------------------------- GEMM
# (M, N, K, quick): 1, primes, non-multiples of 8/16/64, a large K, empty.
GEMM_SHAPES = [
    (1, 1, 1, True), (1, 17, 5, False), (13, 7, 5, True), (31, 37, 29, False),
    (67, 65, 130, True), (3, 5, 1031, True), (0, 5, 3, True), (4, 6, 0, False),
]
GEMM_LAYOUTS = ("contiguous", "a.T", "b.T", "both.T", "sliced", "offset")
GEMM_FEATURES = (("bias",), ("batch",), ("float32_out",), ("nan",), ("inf",),
                 ("bias", "batch"))


def _gemm_cases() -> list[Case]:
    out = []
    for dtype in DTYPES:
        for m, n, k, quick in GEMM_SHAPES:
            for layout in GEMM_LAYOUTS:
                out.append(Case("gemm", dtype, {"M": m, "N": n, "K": k}, layout,
                                quick=quick and layout in ("contiguous", "b.T", "offset")))
        for features in GEMM_FEATURES:
            if "float32_out" in features and dtype not in ("float16", "bfloat16"):
                continue
            for m, n, k, quick in ((13, 7, 5, True), (31, 37, 29, False)):
                params = {"M": m, "N": n, "K": k, **({"batch": 3} if "batch" in features else {})}
                out.append(Case("gemm", dtype, params, "contiguous", features, quick=quick))
    return out


# ---------------------------------------------------------------- attention
# (B, Hq, Hkv, Sq, Sk, D, Dv, quick)
ATTENTION_SHAPES = [
    (1, 1, 1, 1, 1, 16, 16, True),
    (1, 2, 2, 7, 7, 64, 64, True),
    (2, 4, 2, 13, 29, 64, 64, True),     # GQA, Sq < Sk (decoding against a cache)
    (1, 4, 1, 29, 13, 32, 32, True),     # MQA, Sq > Sk: early rows see no key when causal
    (1, 2, 2, 9, 9, 64, 32, False),      # Dv != D
    (1, 2, 1, 0, 5, 16, 16, True),       # empty queries
    (1, 2, 2, 3, 0, 16, 16, False),      # no keys
] + [(1, 2, 1, 11, 17, d, d, d in (80, 256)) for d in (16, 80, 96, 112, 128, 160, 192, 256)]
ATTENTION_LAYOUTS = ("contiguous", "bshd", "offset")
ATTENTION_FEATURES = (("causal",), ("mask_bool",), ("mask_additive",), ("scale",),
                      ("causal", "mask_bool"), ("nan",))


def _attention_cases() -> list[Case]:
    out = []
    names = ("B", "Hq", "Hkv", "Sq", "Sk", "D", "Dv")
    for dtype in DTYPES:
        for *dims, quick in ATTENTION_SHAPES:
            params = dict(zip(names, dims))
            for layout in ATTENTION_LAYOUTS:
                out.append(Case("attention", dtype, params, layout,
                                quick=quick and layout != "offset"))
            for features in ATTENTION_FEATURES:
                out.append(Case("attention", dtype, params, "contiguous", features,
                                quick=quick and params["D"] <= 64))
    return out


# ---------------------------------------------------------------- bad input
# (op, argument, expected exception, params): each is built by inputs.bad_input().
BAD_INPUTS = [
    ("gemm", "b", "ValueError", {"what": "K mismatch"}),
    ("gemm", "b", "TypeError", {"what": "mixed dtypes"}),
    ("gemm", "a", "TypeError", {"what": "integer dtype"}),
    ("gemm", "a", "ValueError", {"what": "1-D"}),
    ("gemm", "bias", "ValueError", {"what": "bias shape"}),
    ("gemm", "out", "ValueError", {"what": "out shape"}),
    ("gemm", "out", "ValueError", {"what": "out aliases a"}),
    ("gemm", "alpha", "TypeError", {"what": "complex alpha"}),
    ("attention", "q", "ValueError", {"what": "3-D q"}),
    ("attention", "k", "ValueError", {"what": "Hq not a multiple of Hkv"}),
    ("attention", "k", "ValueError", {"what": "head dim mismatch"}),
    ("attention", "attn_mask", "TypeError", {"what": "integer mask"}),
    ("attention", "attn_mask", "ValueError", {"what": "mask shape"}),
    ("attention", "causal", "TypeError", {"what": "causal not bool"}),
]


def _bad_input_cases() -> list[Case]:
    return [Case(op, "float32", {"what": params["what"].replace(" ", "_")}, kind="bad_input",
                 expect=expect, argument=arg, quick=True)
            for op, arg, expect, params in BAD_INPUTS]


def all_cases(quick: bool = False, ops: tuple[str, ...] = ("gemm", "attention")) -> list[Case]:
    """Every case of this suite version (``quick``: the marked subset), in a fixed order."""
    cases = _gemm_cases() + _attention_cases() + _bad_input_cases()
    return [c for c in cases if c.op in ops and (c.quick or not quick)]


def case_hash(cases: list[Case]) -> str:
    """sha256 of the case list (ids and parameters), to tell lists apart in reports."""
    text = json.dumps([c.as_dict() for c in cases], sort_keys=True)
    return hashlib.sha256(f"{VERSION}\n{text}".encode()).hexdigest()
