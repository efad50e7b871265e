"""paged_attention's conformance cases, as data, and the tensors for each.

Each case builds caches with spare blocks, gives each sequence its blocks in a shuffled
order (so a walk that assumes consecutive blocks reads the wrong keys), and fills the
unused table entries with -1 (never read). Decode (one query per sequence) and chunked
(``cu_seqlens_q``: several new queries, the last of each sequence's keys) calls; block
sizes 1, 16 and a prime; sequences of 0 keys, one key, a partial last block and exactly
full blocks; GQA/MQA, ``Dv != D``. Layouts: ``contiguous`` and ``fused`` (k and v
caches as views into one ``(num_blocks, block_size, 2, Hkv, D)`` tensor, as some
engines keep them). Features: ``causal`` (the default of the op; ``noncausal`` turns
it off), a sliding ``window``, ``softcap``, ``scale``, ``nan``.

A case's ``params``: ``L`` (keys per sequence, joined by ``-``), ``Sq`` (queries per
sequence, ``-``-joined, or ``decode``), ``bs`` (block size), ``Hq``, ``Hkv``, ``D``,
``Dv``.
"""

from __future__ import annotations

import math

import torch

from ...conformance.cases import (DTYPES, MAX_ELEMENTS, Case, ConformanceSpec, case_seed,
                                  declared_sizes)
from ...testing import randn
from ..varlen_attention.conformance import declared_heads, lengths, offsets

# (L, Sq, bs, Hq, Hkv, D, Dv, quick)
SHAPES = [
    ("1", "decode", 1, 1, 1, 16, 16, True),
    ("5-1-0-33-32", "decode", 16, 4, 2, 32, 32, True),   # empty, 1, partial and full blocks
    ("29-3", "decode", 7, 8, 1, 64, 64, True),           # MQA, prime block size
    ("6-17-0-40", "2-1-0-5", 16, 4, 2, 32, 32, True),    # chunked prefill
    ("3-9", "5-2", 4, 2, 2, 16, 16, False),              # more queries than keys
    ("13-20", "decode", 8, 4, 2, 64, 32, False),         # Dv != D
] + [("9-31", "3-1", 16, 2, 1, d, d, d == 128) for d in (80, 128, 256)]
LAYOUTS = ("contiguous", "fused")
FEATURES = (("noncausal",), ("window",), ("softcap",), ("window", "softcap"), ("scale",),
            ("nan",))
WINDOW = (5, 0)
SOFTCAP = 1.0
_NAMES = ("L", "Sq", "bs", "Hq", "Hkv", "D", "Dv")


def numeric_cases() -> list[Case]:
    out = []
    for dtype in DTYPES:
        for *dims, quick in SHAPES:
            params = dict(zip(_NAMES, dims))
            for layout in LAYOUTS:
                out.append(Case("paged_attention", dtype, params, layout, quick=quick))
            for features in FEATURES:
                out.append(Case("paged_attention", dtype, params, "contiguous", features,
                                quick=quick and params["D"] <= 64))
    return out


def paged_cache(lens: list[int], bs: int, hkv: int, d: int, dv: int, *, dtype, seed: int,
                fused: bool = False, spare: int = 3):
    """``(k_cache, v_cache, block_table)`` holding random keys and values for sequences of
    ``lens`` keys: each sequence's blocks in shuffled order among ``spare`` unused ones,
    table entries past a sequence's last block set to -1."""
    needed = [-(-n // bs) for n in lens]
    num_blocks = sum(needed) + spare
    max_blocks = max(needed, default=0) + 1
    if fused and d == dv:
        both = randn(num_blocks, bs, 2, hkv, d, dtype=dtype, seed=seed)
        k_cache, v_cache = both[:, :, 0], both[:, :, 1]
    else:
        k_cache = randn(num_blocks, bs, hkv, d, dtype=dtype, seed=seed)
        v_cache = randn(num_blocks, bs, hkv, dv, dtype=dtype, seed=seed + 1)
    order = torch.randperm(num_blocks, generator=torch.Generator().manual_seed(seed)).tolist()
    table = torch.full((len(lens), max_blocks), -1, dtype=torch.int32)
    for b, n in enumerate(needed):
        table[b, :n] = torch.tensor(order[:n], dtype=torch.int32)
        order = order[n:]
    return k_cache, v_cache, table


def mask_kwargs(case: Case) -> dict:
    kwargs: dict = {"causal": "noncausal" not in case.features}
    if "window" in case.features:
        kwargs["window"] = WINDOW
    if "softcap" in case.features:
        kwargs["softcap"] = SOFTCAP
    if "scale" in case.features:
        kwargs["scale"] = 0.37
    return kwargs


def inputs(case: Case) -> tuple[tuple, dict]:
    dtype = getattr(torch, case.dtype)
    p, seed = case.params, case_seed(case)
    lens = lengths(p["L"])
    k_cache, v_cache, table = paged_cache(lens, p["bs"], p["Hkv"], p["D"], p["Dv"],
                                          dtype=dtype, seed=seed, fused=case.layout == "fused")
    kwargs = mask_kwargs(case)
    if p["Sq"] == "decode":
        q = randn(len(lens), p["Hq"], p["D"], dtype=dtype, seed=seed + 2)
    else:
        counts = lengths(p["Sq"])
        q = randn(sum(counts), p["Hq"], p["D"], dtype=dtype, seed=seed + 2)
        kwargs.update(cu_seqlens_q=offsets(counts), max_seqlen_q=max(counts))
    if "nan" in case.features and q.numel():
        q = q.clone()
        q[0, 0, 0] = math.nan
    return (q, k_cache, v_cache, table, torch.tensor(lens, dtype=torch.int32)), kwargs


# (argument, expected exception, what): each is built by bad_input().
BAD_INPUTS = [
    ("q", "ValueError", "4-D q"),
    ("q", "ValueError", "rows not one per sequence"),
    ("k_cache", "ValueError", "3-D cache"),
    ("v_cache", "ValueError", "block size mismatch"),
    ("block_table", "ValueError", "block id out of range"),
    ("block_table", "ValueError", "negative block id in use"),
    ("block_table", "TypeError", "int64 block table"),
    ("seq_lens", "ValueError", "seq_lens beyond capacity"),
    ("seq_lens", "ValueError", "seq_lens batch mismatch"),
    ("cu_seqlens_q", "ValueError", "cu_seqlens not ending at T"),
    ("k_cache", "TypeError", "dtype mismatch"),
    ("window", "TypeError", "window not a pair"),
]


def bad_input(case: Case) -> tuple[tuple, dict]:
    """Arguments paged_attention must refuse, naming ``case.argument``."""
    k_cache, v_cache, table = paged_cache([5, 9], 4, 2, 16, 16, dtype=torch.float32, seed=5)
    lens = torch.tensor([5, 9], dtype=torch.int32)
    q = randn(2, 4, 16, seed=6)

    def call(**change):
        kwargs = {n: change.pop(n) for n in ("cu_seqlens_q", "window") if n in change}
        args = dict(q=q, k_cache=k_cache, v_cache=v_cache, block_table=table, seq_lens=lens)
        args.update(change)
        return tuple(args.values()), kwargs

    bad_table = table.clone()
    bad_table[1, 2] = k_cache.shape[0]
    negative = table.clone()
    negative[0, 0] = -1
    return {
        "4-D_q": lambda: call(q=q[None]),
        "rows_not_one_per_sequence": lambda: call(q=randn(3, 4, 16)),
        "3-D_cache": lambda: call(k_cache=k_cache[0]),
        "block_size_mismatch": lambda: call(v_cache=v_cache[:, :3]),
        "block_id_out_of_range": lambda: call(block_table=bad_table),
        "negative_block_id_in_use": lambda: call(block_table=negative),
        "int64_block_table": lambda: call(block_table=table.long()),
        "seq_lens_beyond_capacity": lambda: call(seq_lens=torch.tensor([5, 99],
                                                                       dtype=torch.int32)),
        "seq_lens_batch_mismatch": lambda: call(seq_lens=torch.tensor([5], dtype=torch.int32)),
        "cu_seqlens_not_ending_at_T": lambda: call(cu_seqlens_q=offsets([1, 2])),
        "dtype_mismatch": lambda: call(k_cache=k_cache.half(), v_cache=v_cache.half()),
        "window_not_a_pair": lambda: call(window=4),
    }[case.params["what"]]()


_INPUT_FEATURES = {"causal", "window", "softcap", "chunked"}


def declared_case(dtype, values, features, limits) -> Case | None:
    """A small paged call in ``dtype`` using ``features``, with the head dims and block
    size in ``values`` and the others at allowed values near D = 32, block size 16."""
    heads = declared_heads(values, features, limits)
    sizes = declared_sizes(values, limits, (("block_size", 16),))
    if not features <= _INPUT_FEATURES | {"gqa", "head_dim_v"} or None in (heads, sizes):
        return None
    (hq, hkv), head, head_v = heads
    bs = sizes["block_size"]
    if (3 * bs + 4) * hkv * (head + head_v) > MAX_ELEMENTS:
        return None
    feats = tuple(sorted((features & {"window", "softcap"})
                         | (set() if "causal" in features else {"noncausal"})))
    params = dict(zip(_NAMES, (f"{bs + 3}-{2 * bs}", "2-1" if "chunked" in features
                               else "decode", bs, hq, hkv, head, head_v)))
    return Case("paged_attention", dtype, params, "contiguous", feats)


SPEC = ConformanceSpec(numeric_cases, inputs, BAD_INPUTS, bad_input, declared_case)
