"""Tensors for a :class:`~.cases.Case`: seeded random data (never zeros), laid out as the
case says. Returns the op's positional tensors and keyword arguments."""

from __future__ import annotations

import math
import zlib

import torch

from ..testing import gemm_operands, randn
from .cases import Case


def _seed(case: Case) -> int:
    return zlib.crc32(case.id.encode()) % 100_000


def gemm_inputs(case: Case) -> tuple[tuple, dict]:
    dtype = getattr(torch, case.dtype)
    p, seed = case.params, _seed(case)
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


def attention_inputs(case: Case) -> tuple[tuple, dict]:
    dtype = getattr(torch, case.dtype)
    p, seed = case.params, _seed(case)
    B, Hq, Hkv, Sq, Sk, D, Dv = (p[x] for x in ("B", "Hq", "Hkv", "Sq", "Sk", "D", "Dv"))
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


def numeric_inputs(case: Case) -> tuple[tuple, dict]:
    return gemm_inputs(case) if case.op == "gemm" else attention_inputs(case)


def bad_input(case: Case) -> tuple[tuple, dict]:
    """Arguments the op must refuse, naming ``case.argument``."""
    what = case.params["what"]
    x = randn(4, 5, seed=1)
    y = randn(5, 3, seed=2)
    q = randn(1, 4, 6, 16, seed=3)
    kv = randn(1, 2, 6, 16, seed=4)
    gemm = {
        "K_mismatch": ((x, randn(4, 3)), {}),
        "mixed_dtypes": ((x, y.half()), {}),
        "integer_dtype": ((x.long(), y.long()), {}),
        "1-D": ((randn(5), y), {}),
        "bias_shape": ((x, y), {"bias": randn(7)}),
        "out_shape": ((x, y), {"out": torch.empty(3, 4)}),
        "out_aliases_a": ((x, y), {"out": x[:, :3]}),
        "complex_alpha": ((x, y), {"alpha": 1j}),
    }
    attention = {
        "3-D_q": ((q[0], kv, kv), {}),
        "Hq_not_a_multiple_of_Hkv": ((randn(1, 3, 6, 16), kv, kv), {}),
        "head_dim_mismatch": ((q, randn(1, 2, 6, 8), kv), {}),
        "integer_mask": ((q, kv, kv), {"attn_mask": torch.ones(6, 6, dtype=torch.int32)}),
        "mask_shape": ((q, kv, kv), {"attn_mask": torch.ones(5, 6, dtype=torch.bool)}),
        "causal_not_bool": ((q, kv, kv), {"causal": 1}),
    }
    return (gemm if case.op == "gemm" else attention)[what]
