"""attention's conformance cases, as data, and the tensors for each.

Shapes cover one query and one key, GQA/MQA, causal with Sq < Sk and Sq > Sk (early
rows see no key), Dv != D, empty queries and no keys, and head dims 16–256 including
80/96/112/160/192. Layouts: ``contiguous``, ``bshd`` (``(B, S, H, D)`` storage seen
transposed) and ``offset``; features ``causal``, ``mask_bool``, ``mask_additive``
(with fully masked rows), an explicit ``scale``, ``nan``.

A case's ``params`` are ``B, Hq, Hkv, Sq, Sk, D, Dv``.
"""

from __future__ import annotations

import math

import torch

from ...conformance.cases import DTYPES, MAX_ELEMENTS, Case, ConformanceSpec, case_seed
from ...testing import randn

# (B, Hq, Hkv, Sq, Sk, D, Dv, quick)
SHAPES = [
    (1, 1, 1, 1, 1, 16, 16, True),
    (1, 2, 2, 7, 7, 64, 64, True),
    (2, 4, 2, 13, 29, 64, 64, True),     # GQA, Sq < Sk (decoding against a cache)
    (1, 4, 1, 29, 13, 32, 32, True),     # MQA, Sq > Sk: early rows see no key when causal
    (1, 2, 2, 9, 9, 64, 32, False),      # Dv != D
    (1, 2, 1, 0, 5, 16, 16, True),       # empty queries
    (1, 2, 2, 3, 0, 16, 16, False),      # no keys
] + [(1, 2, 1, 11, 17, d, d, d in (80, 256)) for d in (16, 80, 96, 112, 128, 160, 192, 256)]
LAYOUTS = ("contiguous", "bshd", "offset")
FEATURES = (("causal",), ("mask_bool",), ("mask_additive",), ("scale",),
            ("causal", "mask_bool"), ("nan",))
_NAMES = ("B", "Hq", "Hkv", "Sq", "Sk", "D", "Dv")


def numeric_cases() -> list[Case]:
    out = []
    for dtype in DTYPES:
        for *dims, quick in SHAPES:
            params = dict(zip(_NAMES, dims))
            for layout in LAYOUTS:
                out.append(Case("attention", dtype, params, layout,
                                quick=quick and layout != "offset"))
            for features in FEATURES:
                out.append(Case("attention", dtype, params, "contiguous", features,
                                quick=quick and params["D"] <= 64))
    return out


def _heads_layout(t: torch.Tensor, layout: str, seed: int) -> torch.Tensor:
    """``t (B, H, S, D)`` re-laid out: ``bshd`` stores ``(B, S, H, D)`` and returns the
    transposed view; ``offset`` starts inside a larger storage."""
    if layout == "bshd":
        return t.transpose(1, 2).contiguous().transpose(1, 2)
    if layout == "offset":
        B, H, S, D = t.shape
        big = randn(B, H, S + 2, D + 3, dtype=t.dtype, seed=seed)
        view = big[:, :, 2:, 3:]
        view.copy_(t)
        return view
    return t


def inputs(case: Case) -> tuple[tuple, dict]:
    dtype = getattr(torch, case.dtype)
    p, seed = case.params, case_seed(case)
    B, Hq, Hkv, Sq, Sk, D, Dv = (p[x] for x in _NAMES)
    q = randn(B, Hq, Sq, D, dtype=dtype, seed=seed)
    k = randn(B, Hkv, Sk, D, dtype=dtype, seed=seed + 1)
    v = randn(B, Hkv, Sk, Dv, dtype=dtype, seed=seed + 2)
    q, k, v = (_heads_layout(t, case.layout, seed + 3 + i) for i, t in enumerate((q, k, v)))
    kwargs: dict = {"causal": "causal" in case.features}
    gen = torch.Generator().manual_seed(seed)
    if "mask_bool" in case.features:  # (Sq, Sk) broadcast; row 1 sees no key
        mask = torch.rand(Sq, Sk, generator=gen) > 0.3
        if Sq > 1:
            mask[1] = False
        kwargs["attn_mask"] = mask
    if "mask_additive" in case.features:  # (1, Hq, Sq, Sk) with -inf, row 0 fully masked
        mask = randn(1, Hq, Sq, Sk, dtype=dtype, seed=seed + 6)
        if Sk > 2:
            mask[..., 2] = -math.inf
        if Sq:
            mask[..., 0, :] = -math.inf
        kwargs["attn_mask"] = mask
    if "scale" in case.features:
        kwargs["scale"] = 0.37
    if "nan" in case.features and q.numel():
        q = q.clone()
        q[0, 0, 0, 0] = math.nan  # that query row must be NaN
    return (q, k, v), kwargs


# (argument, expected exception, what): each is built by bad_input().
BAD_INPUTS = [
    ("q", "ValueError", "3-D q"),
    ("k", "ValueError", "Hq not a multiple of Hkv"),
    ("k", "ValueError", "head dim mismatch"),
    ("attn_mask", "TypeError", "integer mask"),
    ("attn_mask", "ValueError", "mask shape"),
    ("causal", "TypeError", "causal not bool"),
]


def bad_input(case: Case) -> tuple[tuple, dict]:
    """Arguments attention must refuse, naming ``case.argument``."""
    q, kv = randn(1, 4, 6, 16, seed=3), randn(1, 2, 6, 16, seed=4)
    return {
        "3-D_q": ((q[0], kv, kv), {}),
        "Hq_not_a_multiple_of_Hkv": ((randn(1, 3, 6, 16), kv, kv), {}),
        "head_dim_mismatch": ((q, randn(1, 2, 6, 8), kv), {}),
        "integer_mask": ((q, kv, kv), {"attn_mask": torch.ones(6, 6, dtype=torch.int32)}),
        "mask_shape": ((q, kv, kv), {"attn_mask": torch.ones(5, 6, dtype=torch.bool)}),
        "causal_not_bool": ((q, kv, kv), {"causal": 1}),
    }[case.params["what"]]


_INPUT_FEATURES = {"causal", "mask_bool", "mask_additive"}  # what inputs() reads


def declared_case(dtype, values, features, limits) -> Case | None:
    """A small attention call in ``dtype`` using ``features``, with the head dims or
    sizes in ``values`` (``head_dim``, ``head_dim_v``, ``Sq``, ``Sk``) and the others at
    allowed values near D = 32, Sq = 7, Sk = 11; ``head_dim_v`` makes Dv differ from D."""
    if not features <= _INPUT_FEATURES | {"gqa", "head_dim_v"} or \
            {"mask_bool", "mask_additive"} <= features:
        return None

    def allowed(name, value):
        return name not in limits or limits[name].allows(value)

    def pick(name, default):
        if name in values:
            return values[name]
        return limits[name].nearest(default) if name in limits else default

    head = pick("head_dim", values.get("head_dim_v", 32))
    if "head_dim_v" in features:
        wanted = (head * 2, head // 2, head + 1, head - 1)  # Dv > D first: the rarer
        near = [limits["head_dim_v"].nearest(w) if "head_dim_v" in limits else w
                for w in wanted]
        head_v = next((d for d in near if d is not None and d > 0 and d != head), None)
    else:
        head_v = values.get("head_dim_v", head)
    sq, sk = pick("Sq", 7), pick("Sk", 11)
    if None in (head, head_v, sq, sk) or head < 1 or head_v < 1 or (head_v != head) != (
            "head_dim_v" in features) or not (allowed("head_dim", head)
                                              and allowed("head_dim_v", head_v)):
        return None
    hq, hkv = (4, 2) if "gqa" in features else (2, 2)
    if hq * sq * (head + sk) + hkv * sk * (head + head_v) > MAX_ELEMENTS:
        return None
    params = dict(zip(_NAMES, (1, hq, hkv, sq, sk, head, head_v)))
    return Case("attention", dtype, params, "contiguous",
                tuple(sorted(features & _INPUT_FEATURES)))


SPEC = ConformanceSpec(numeric_cases, inputs, BAD_INPUTS, bad_input, declared_case)
