"""gemm's conformance cases, as data, and the tensors for each.

Shapes include 1, primes, non-multiples of 8/16/64, a large K and empty tensors;
layouts transposed, strided and offset views; features bias (with alpha and beta),
broadcast batch dims, a float32 output for 16-bit inputs, NaN and Inf inputs.

A case's ``params`` are ``M, N, K`` (+ ``batch``); its ``layout`` ``contiguous`` or one
of :data:`~.checks.GEMM_LAYOUTS`; its features ``bias``, ``batch``, ``float32_out``,
``nan``, ``inf``.
"""

from __future__ import annotations

import math

import torch

from ...conformance.cases import (DTYPES, MAX_ELEMENTS, Case, ConformanceSpec, case_seed,
                                  declared_sizes)
from ...testing import randn
from .checks import gemm_operands

# (M, N, K, quick): 1, primes, non-multiples of 8/16/64, a large K, empty.
SHAPES = [
    (1, 1, 1, True), (1, 17, 5, False), (13, 7, 5, True), (31, 37, 29, False),
    (67, 65, 130, True), (3, 5, 1031, True), (0, 5, 3, True), (4, 6, 0, False),
]
LAYOUTS = ("contiguous", "a.T", "b.T", "both.T", "sliced", "offset")
FEATURES = (("bias",), ("batch",), ("float32_out",), ("nan",), ("inf",), ("bias", "batch"))


def numeric_cases() -> list[Case]:
    out = []
    for dtype in DTYPES:
        for m, n, k, quick in SHAPES:
            for layout in LAYOUTS:
                out.append(Case("gemm", dtype, {"M": m, "N": n, "K": k}, layout,
                                quick=quick and layout in ("contiguous", "b.T", "offset")))
        for features in FEATURES:
            if "float32_out" in features and dtype not in ("float16", "bfloat16"):
                continue
            for m, n, k, quick in ((13, 7, 5, True), (31, 37, 29, False)):
                params = {"M": m, "N": n, "K": k, **({"batch": 3} if "batch" in features else {})}
                out.append(Case("gemm", dtype, params, "contiguous", features, quick=quick))
    return out


def inputs(case: Case) -> tuple[tuple, dict]:
    dtype = getattr(torch, case.dtype)
    p, seed = case.params, case_seed(case)
    m, n, k = p["M"], p["N"], p["K"]
    if case.layout == "contiguous":
        a, b = randn(m, k, dtype=dtype, seed=seed), randn(k, n, dtype=dtype, seed=seed + 1)
    else:
        a, b = gemm_operands(case.layout, m, n, k, dtype=dtype)
    kwargs = {}
    if "batch" in case.features:  # a (batch, 1, M, K) broadcast against b (batch-free)
        a = randn(p["batch"], 1, m, k, dtype=dtype, seed=seed + 2)
        b = randn(2, k, n, dtype=dtype, seed=seed + 3)
    if "bias" in case.features:
        kwargs.update(bias=randn(n, dtype=dtype, seed=seed + 4), alpha=0.75, beta=-1.5)
    if "nan" in case.features and a.numel():
        a = a.clone()
        a[..., 0, 0] = math.nan  # row 0 of the result must be NaN, the rest finite
    if "inf" in case.features and a.numel():
        a = a.clone()
        a[..., 1, 0] = math.inf  # row 1 of the result: +-inf as signs dictate
    if "float32_out" in case.features:
        batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        kwargs["out"] = torch.empty(*batch, m, n, dtype=torch.float32)
    return (a, b), kwargs


# (argument, expected exception, what): each is built by bad_input().
BAD_INPUTS = [
    ("b", "ValueError", "K mismatch"),
    ("b", "TypeError", "mixed dtypes"),
    ("a", "TypeError", "integer dtype"),
    ("a", "ValueError", "1-D"),
    ("bias", "ValueError", "bias shape"),
    ("out", "ValueError", "out shape"),
    ("out", "ValueError", "out aliases a"),
    ("alpha", "TypeError", "complex alpha"),
]


def bad_input(case: Case) -> tuple[tuple, dict]:
    """Arguments gemm must refuse, naming ``case.argument``."""
    x, y = randn(4, 5, seed=1), randn(5, 3, seed=2)
    return {
        "K_mismatch": ((x, randn(4, 3)), {}),
        "mixed_dtypes": ((x, y.half()), {}),
        "integer_dtype": ((x.long(), y.long()), {}),
        "1-D": ((randn(5), y), {}),
        "bias_shape": ((x, y), {"bias": randn(7)}),
        "out_shape": ((x, y), {"out": torch.empty(3, 4)}),
        "out_aliases_a": ((x, y), {"out": x[:, :3]}),
        "complex_alpha": ((x, y), {"alpha": 1j}),
    }[case.params["what"]]


def declared_case(dtype, values, features, limits) -> Case | None:
    """A small gemm in ``dtype`` using ``features``, with the sizes in ``values``
    (``M``, ``N``, ``K``) and the others at their allowed values nearest 13×7×29."""
    if "float32_out" in features and dtype not in ("float16", "bfloat16"):
        return None
    dims = declared_sizes(values, limits, (("M", 13), ("N", 7), ("K", 29)))
    if dims is None:
        return None
    m, n, k = dims["M"], dims["N"], dims["K"]
    if m * k + k * n + m * n > MAX_ELEMENTS:
        return None
    if "batch" in features:
        dims["batch"] = 3
    return Case("gemm", dtype, dims, "contiguous", tuple(sorted(features)))


SPEC = ConformanceSpec(numeric_cases, inputs, BAD_INPUTS, bad_input, declared_case)
