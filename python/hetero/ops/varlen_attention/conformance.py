"""varlen_attention's conformance cases, as data, and the tensors for each.

Batches mix empty sequences, one-token ones, primes and sequences with more queries
than keys (early rows see no key when causal); GQA/MQA, ``Dv != D``, head dims 16–256.
Layouts: ``contiguous``, ``qkv`` (q, k, v as views into one packed projection output,
rows strided) and ``offset``. Features: ``causal``, a sliding ``window`` (left only, as
Mistral's, with causal), a two-sided window without causal, ``softcap`` (1.0, so it
bends the scores of these inputs), an explicit ``scale``, ``nan``.

A case's ``params``: ``Sq`` and ``Sk`` (each sequence's query and key counts, joined by
``-``), ``Hq``, ``Hkv``, ``D``, ``Dv``.
"""

from __future__ import annotations

import math

import torch

from ...conformance.cases import (DTYPES, MAX_ELEMENTS, Case, ConformanceSpec, case_seed,
                                  declared_sizes)
from ...testing import randn

# (Sq per sequence, Sk per sequence, Hq, Hkv, D, Dv, quick)
SHAPES = [
    ("1", "1", 1, 1, 16, 16, True),
    ("5-1-0-13", "5-9-3-13", 4, 2, 32, 32, True),      # empty, one token, decode-like, prime
    ("7-2", "3-2", 2, 1, 32, 32, True),                # more queries than keys
    ("0-0", "4-0", 2, 2, 16, 16, False),               # no queries at all
    ("11-3", "11-19", 4, 1, 64, 32, False),            # MQA, Dv != D
] + [("6-9", "6-17", 2, 1, d, d, d == 128) for d in (80, 128, 256)]
LAYOUTS = ("contiguous", "qkv", "offset")
FEATURES = (("causal",), ("causal", "window"), ("window_both",), ("softcap",),
            ("causal", "softcap"), ("scale",), ("nan",))
WINDOWS = {"window": (3, 0), "window_both": (2, 1)}
SOFTCAP = 1.0
_NAMES = ("Sq", "Sk", "Hq", "Hkv", "D", "Dv")


def numeric_cases() -> list[Case]:
    out = []
    for dtype in DTYPES:
        for *dims, quick in SHAPES:
            params = dict(zip(_NAMES, dims))
            for layout in LAYOUTS:
                out.append(Case("varlen_attention", dtype, params, layout,
                                quick=quick and layout != "offset"))
            for features in FEATURES:
                out.append(Case("varlen_attention", dtype, params, "contiguous", features,
                                quick=quick and params["D"] <= 64))
    return out


def lengths(text: str) -> list[int]:
    return [int(x) for x in str(text).split("-")]


def offsets(lens: list[int]) -> torch.Tensor:
    """``cu_seqlens`` (int32) of sequences of these lengths."""
    cu = [0]
    for n in lens:
        cu.append(cu[-1] + n)
    return torch.tensor(cu, dtype=torch.int32)


def packed(layout: str, q, k, v, seed: int):
    """q, k, v re-laid out: ``qkv`` views into one ``(T, Hq + 2 Hkv, D)`` projection
    output (rows strided; needs Tq == Tk and D == Dv, else contiguous); ``offset`` each
    starting inside a larger storage."""
    if layout == "qkv" and q.shape[0] == k.shape[0] and q.shape[2] == v.shape[2]:
        fused = torch.cat([q, k, v], dim=1)
        hq, hkv = q.shape[1], k.shape[1]
        return fused[:, :hq], fused[:, hq:hq + hkv], fused[:, hq + hkv:]
    if layout == "offset":
        out = []
        for i, t in enumerate((q, k, v)):
            T, H, D = t.shape
            big = randn(T + 2, H, D + 3, dtype=t.dtype, seed=seed + i)
            view = big[2:, :, 3:]
            view.copy_(t)
            out.append(view)
        return tuple(out)
    return q, k, v


def mask_kwargs(case: Case) -> dict:
    """causal, window, softcap and scale of a case."""
    kwargs: dict = {"causal": "causal" in case.features}
    for name, window in WINDOWS.items():
        if name in case.features:
            kwargs["window"] = window
    if "softcap" in case.features:
        kwargs["softcap"] = SOFTCAP
    if "scale" in case.features:
        kwargs["scale"] = 0.37
    return kwargs


def inputs(case: Case) -> tuple[tuple, dict]:
    dtype = getattr(torch, case.dtype)
    p, seed = case.params, case_seed(case)
    lens_q, lens_k = lengths(p["Sq"]), lengths(p["Sk"])
    q = randn(sum(lens_q), p["Hq"], p["D"], dtype=dtype, seed=seed)
    k = randn(sum(lens_k), p["Hkv"], p["D"], dtype=dtype, seed=seed + 1)
    v = randn(sum(lens_k), p["Hkv"], p["Dv"], dtype=dtype, seed=seed + 2)
    q, k, v = packed(case.layout, q, k, v, seed + 3)
    if "nan" in case.features and q.numel():
        q = q.clone()
        q[0, 0, 0] = math.nan  # that query row must be NaN
    return ((q, k, v, offsets(lens_q), offsets(lens_k), max(lens_q), max(lens_k)),
            mask_kwargs(case))


# (argument, expected exception, what): each is built by bad_input().
BAD_INPUTS = [
    ("q", "ValueError", "4-D q"),
    ("k", "ValueError", "Hq not a multiple of Hkv"),
    ("cu_seqlens_q", "ValueError", "decreasing cu_seqlens"),
    ("cu_seqlens_k", "ValueError", "cu_seqlens not ending at T"),
    ("cu_seqlens_q", "TypeError", "int64 cu_seqlens"),
    ("cu_seqlens_k", "ValueError", "batch mismatch"),
    ("max_seqlen_k", "ValueError", "max_seqlen too small"),
    ("window", "ValueError", "window below -1"),
    ("softcap", "ValueError", "negative softcap"),
    ("k", "TypeError", "dtype mismatch"),
]


def bad_input(case: Case) -> tuple[tuple, dict]:
    """Arguments varlen_attention must refuse, naming ``case.argument``."""
    q, kv = randn(9, 4, 16, seed=3), randn(11, 2, 16, seed=4)
    cq, ck = offsets([4, 5]), offsets([5, 6])

    def call(**change):
        args = dict(q=q, k=kv, v=kv, cu_seqlens_q=cq, cu_seqlens_k=ck, max_seqlen_q=5,
                    max_seqlen_k=6)
        kwargs = {name: change.pop(name) for name in ("window", "softcap") if name in change}
        args.update(change)
        return tuple(args.values()), kwargs

    return {
        "4-D_q": lambda: call(q=q[None]),
        "Hq_not_a_multiple_of_Hkv": lambda: call(k=randn(11, 3, 16), v=randn(11, 3, 16)),
        "decreasing_cu_seqlens": lambda: call(cu_seqlens_q=torch.tensor([0, 6, 4, 9],
                                                                        dtype=torch.int32),
                                              cu_seqlens_k=offsets([5, 3, 3])),
        "cu_seqlens_not_ending_at_T": lambda: call(cu_seqlens_k=offsets([5, 5])),
        "int64_cu_seqlens": lambda: call(cu_seqlens_q=cq.long()),
        "batch_mismatch": lambda: call(cu_seqlens_k=offsets([5, 3, 3])),
        "max_seqlen_too_small": lambda: call(max_seqlen_k=5),
        "window_below_-1": lambda: call(window=(-2, 0)),
        "negative_softcap": lambda: call(softcap=-1.0),
        "dtype_mismatch": lambda: call(k=kv.half(), v=kv.half()),
    }[case.params["what"]]()


_INPUT_FEATURES = {"causal", "window", "softcap"}  # what inputs() reads


def declared_heads(values, features, limits) -> tuple[int, int, int, int] | None:
    """``(Hq, Hkv, D, Dv)`` of a small derived serving case: the head dims in ``values``,
    else allowed ones near 32 (``Dv = 2 D`` with ``head_dim_v``), GQA 4/2 with ``gqa``;
    ``None`` where the limits allow no such dims."""
    dims = declared_sizes(values, limits, (("head_dim", 32),))
    if dims is None:
        return None
    head = dims["head_dim"]
    dims = declared_sizes(values, limits,
                          (("head_dim_v", 2 * head if "head_dim_v" in features else head),))
    if dims is None or (dims["head_dim_v"] != head) != ("head_dim_v" in features):
        return None
    if "head_dim_v" in limits and not limits["head_dim_v"].allows(dims["head_dim_v"]):
        return None
    return (4, 2) if "gqa" in features else (2, 2), head, dims["head_dim_v"]


def declared_case(dtype, values, features, limits) -> Case | None:
    """A small varlen call in ``dtype`` using ``features``, with the head dims in
    ``values`` and the others at allowed values near D = 32."""
    heads = declared_heads(values, features, limits)
    if not features <= _INPUT_FEATURES | {"gqa", "head_dim_v"} or heads is None:
        return None
    (hq, hkv), head, head_v = heads
    if 32 * (hq + 2 * hkv) * max(head, head_v) > MAX_ELEMENTS:
        return None
    window = "window" in features
    feats = tuple(sorted(({"causal", "window"} if window else set())
                         | (features & {"causal", "softcap"})))
    params = dict(zip(_NAMES, ("5-1-7", "9-1-13", hq, hkv, head, head_v)))
    return Case("varlen_attention", dtype, params, "contiguous", feats)


SPEC = ConformanceSpec(numeric_cases, inputs, BAD_INPUTS, bad_input, declared_case)
