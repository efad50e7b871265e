"""The cpu backend's scaled GEMM: hetero.scaled_gemm(..., backend="cpu") against the
float64 oracle with poisoned outputs, on every kernel set this machine runs (the
``isa`` fixture), both paths (decode-shaped rows stream the weight; the rest decode and
run the bf16 GEMM) and the weight streams of the amx and avx512 sets (int8 on AMX-INT8
or vpdpbusd, the others decoded into the bf16 weight stream), every input dtype and
scale recipe, awkward shapes and views."""

from __future__ import annotations

import pytest
import torch

import hetero
from hetero import _C
from hetero.backends.views import view
from hetero.ops.scaled_gemm.api import INPUT_DTYPES
from hetero.ops.scaled_gemm.conformance import quantized, scales
from hetero.testing import check_against_oracle

DTYPES = [pytest.param(d, id=str(d).removeprefix("torch.")) for d in INPUT_DTYPES]
# (M, N, K): decode-shaped (M <= 16) and not; 1s, primes, K around the 64-wide chunks
# and the 512-deep int8 slices.
SHAPES = [(1, 1, 1), (1, 9, 63), (1, 37, 200), (2, 7, 65), (3, 5, 129), (4, 33, 1031),
          (5, 6, 100), (16, 9, 77), (17, 5, 130), (40, 33, 513)]
BLOCK_SHAPES = [(1, 1, 128), (1, 300, 256), (2, 261, 128), (3, 131, 256), (5, 129, 384),
                (17, 7, 640), (33, 260, 128)]


def _operands(dtype, m, n, k, seed, b_layout="w.t()"):
    a = quantized((m, k), dtype, seed)
    b = quantized((k, n), dtype, seed + 1, layout_t=b_layout == "w.t()")
    return a, b


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("recipe", ["tensor", "row"])
@pytest.mark.parametrize("m, n, k", SHAPES)
def test_tensor_and_row_scales(isa, dtype, recipe, m, n, k):
    a, b = _operands(dtype, m, n, k, seed=m + n + k)
    sa, sb = scales(recipe, m, n, k, seed=k)
    check_against_oracle("scaled_gemm", a, b, sa, sb, backend="cpu")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m, n, k", BLOCK_SHAPES)
def test_block_scales(isa, dtype, m, n, k):
    a, b = _operands(dtype, m, n, k, seed=m + k)
    sa, sb = scales("block", m, n, k, seed=n, signs=True)
    check_against_oracle("scaled_gemm", a, b, sa, sb, backend="cpu",
                         out_dtype=torch.float32)


# The int8 streams, b = w.t(): the amx set's (3-128 rows, K in 64s; rows around its
# 16-row tiles and 32-row blocks, columns around its 32-row chunks of w) and the avx512
# set's (20-512 rows, K in 4s; rows around its 64-row units and 16- and 32-row tails,
# columns around its 12- and 24-row chunks of w, depths ending inside a 64-byte line).
INT8_STREAM_SHAPES = [(3, 32, 64), (16, 45, 128), (17, 300, 64), (33, 31, 1024), (128, 70, 192),
                      (129, 33, 64), (20, 25, 36), (64, 13, 4), (65, 24, 68), (97, 37, 132),
                      (512, 30, 64), (513, 7, 8)]


@pytest.mark.parametrize("m, n, k", SHAPES + INT8_STREAM_SHAPES)
def test_int8_sums_are_exact(isa, m, n, k):
    """int32 results of extreme operands (every product 128 * 128) equal torch's."""
    a = torch.full((m, k), -128, dtype=torch.int8)
    b = torch.full((n, k), -128, dtype=torch.int8).t()
    got = hetero.scaled_gemm(a, b, None, None, out_dtype=torch.int32, backend="cpu")
    assert torch.equal(got, torch.full((m, n), 16384 * k, dtype=torch.int32))
    a, b = _operands(torch.int8, m, n, k, seed=3)
    check_against_oracle("scaled_gemm", a, b, None, None, backend="cpu",
                         out_dtype=torch.int32)


@pytest.mark.parametrize("m, n, k", INT8_STREAM_SHAPES)
def test_int8_stream_transposed_a_and_row_scales(isa, m, n, k):
    # (The exact sums of these shapes: test_int8_sums_are_exact.)
    a, b = _operands(torch.int8, m, n, k, seed=5)
    a = a.t().contiguous().t()
    check_against_oracle("scaled_gemm", a, b, None, None, backend="cpu", out_dtype=torch.int32)
    sa, sb = scales("row", m, n, k, seed=k)
    check_against_oracle("scaled_gemm", a, b, sa, sb, backend="cpu")


# The amx set's bf16 weight stream with decoding: float8 (and int8 with block scales)
# x @ w.t() of 5-128 rows, K in 32s; w decoded a 32-row chunk at a time. Rows around
# the stream's 16-row tiles and 32-row blocks, columns around its chunks.
DECODING_STREAM_SHAPES = [(5, 32, 32), (16, 45, 128), (33, 31, 1024), (128, 70, 192),
                          (129, 33, 64)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m, n, k", DECODING_STREAM_SHAPES)
def test_decoding_weight_stream(isa, dtype, m, n, k):
    a, b = _operands(dtype, m, n, k, seed=m + k)
    for recipe in ("tensor", "row"):
        check_against_oracle("scaled_gemm", a, b, *scales(recipe, m, n, k, seed=n), backend="cpu")
    # a with no unit stride along k, and block scales (a GEMM per 128-deep block)
    check_against_oracle("scaled_gemm", a.t().contiguous().t(), b, *scales("row", m, n, k, seed=1),
                         backend="cpu")
    if k % 128 == 0:
        check_against_oracle("scaled_gemm", a, b, *scales("block", m, n, k, seed=2, signs=True),
                             backend="cpu", out_dtype=torch.float32)


def test_int8_stream_on_two_threads(isa):
    """Enough weight for two threads (and a last chunk past N): exact against torch."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        a, b = _operands(torch.int8, 64, 301, 1024, seed=9)
        got = hetero.scaled_gemm(a, b, None, None, out_dtype=torch.int32, backend="cpu")
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(got, torch._int_mm(a, b))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 40])  # the streaming path and the decoded one
def test_every_code_decodes_exactly(isa, dtype, m):
    """All 256 codes of the dtype, as a times a 1, give torch's own decoding (NaN
    for NaN codes, +-inf for e5m2's)."""
    codes = torch.arange(256, dtype=torch.uint8).view(dtype).reshape(256, 1)
    one = torch.ones(1, 1).to(dtype)
    for rows in codes.split(m):
        got = hetero.scaled_gemm(rows, one, torch.ones(1), torch.ones(1),
                                 out_dtype=torch.float32, backend="cpu")
        want = rows.float()
        assert torch.equal(got.isnan(), want.isnan())
        assert torch.equal(got.nan_to_num(), want.nan_to_num())


@pytest.mark.parametrize("flush_denormal", [False, True], ids=["", "flush_denormal"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 4, 40])  # the streaming path (1 and 4 rows), the decoded one
def test_every_code_decodes_exactly_as_a_weight(isa, dtype, m, flush_denormal):
    """All 256 codes of the dtype in w (b = w.t(), the streamed operand), one per column,
    times rows of ones: torch's own decoding, NaN where it gives NaN, subnormal codes
    exact even with denormals flushed (torch.set_flush_denormal sets the CPU's DAZ/FTZ,
    where supported, for this thread)."""
    w = torch.arange(256, dtype=torch.uint8).view(dtype).reshape(256, 1)
    a = torch.ones(m, 1).to(dtype)
    if flush_denormal and not torch.set_flush_denormal(True):
        pytest.skip("this CPU has no flush-denormal mode")
    try:
        got = hetero.scaled_gemm(a, w.t(), torch.ones(1), torch.ones(1),
                                 out_dtype=torch.float32, backend="cpu")
    finally:
        torch.set_flush_denormal(False)
    want = w.float().reshape(1, 256).expand(m, 256)
    assert torch.equal(got.isnan(), want.isnan())
    assert torch.equal(got.nan_to_num(), want.nan_to_num())


@pytest.mark.parametrize("dtype", DTYPES)
def test_b_any_layout_bias_and_every_out_dtype(isa, dtype):
    m, n, k = 6, 11, 70
    for b_layout in ("w.t()", "row-major", "strided"):
        a, b = _operands(dtype, m, n, k, seed=9, b_layout=b_layout)
        if b_layout == "strided":
            b = quantized((k, 2 * n), dtype, 10)[:, ::2]
        sa, sb = scales("row", m, n, k, seed=1)
        for out_dtype in (torch.bfloat16, torch.float16, torch.float32):
            scale = 1 / 64 if dtype is torch.int8 and out_dtype is torch.float16 else 1
            check_against_oracle("scaled_gemm", a, b, sa * scale, sb, backend="cpu",
                                 bias=torch.randn(n).to(out_dtype), out_dtype=out_dtype)


def test_inputs_are_not_modified_and_empty_calls(isa):
    a, b = _operands(torch.float8_e4m3fn, 3, 4, 130, seed=2)
    sa, sb = scales("row", 3, 4, 130, seed=2)
    saved = [t.clone() for t in (a.view(torch.uint8), b.view(torch.uint8), sa, sb)]
    hetero.scaled_gemm(a, b, sa, sb, backend="cpu")
    for before, after in zip(saved, (a.view(torch.uint8), b.view(torch.uint8), sa, sb)):
        assert torch.equal(before, after)
    empty = hetero.scaled_gemm(a[:, :0], b[:0], sa, sb, bias=torch.ones(4), backend="cpu")
    assert torch.equal(empty, torch.ones(3, 4, dtype=torch.bfloat16))
    assert hetero.scaled_gemm(a[:0], b, sa[:0], sb, backend="cpu").shape == (0, 4)


def test_the_native_entry_rejects_bad_views_naming_them():
    a, b = _operands(torch.float8_e4m3fn, 3, 4, 5, seed=1)
    out = torch.empty(3, 4)
    one = torch.ones(1, 1)
    with pytest.raises((ValueError, TypeError), match="^b"):
        _C.scaled_gemm(view(a), view(b[:4]), view(one), view(one), 0, None, view(out), 1)
    with pytest.raises((ValueError, TypeError), match="scale_a"):
        _C.scaled_gemm(view(a), view(b), view(torch.ones(2, 1)), view(torch.ones(1, 4)), 1,
                       None, view(out), 1)
    with pytest.raises((ValueError, TypeError), match="^out"):
        _C.scaled_gemm(view(a), view(b), None, None, 0, None, view(out), 1)
    with pytest.raises((ValueError, TypeError), match="^a"):
        _C.scaled_gemm(view(a.float()), view(b), view(one), view(one), 0, None, view(out), 1)


@pytest.mark.parametrize("m", [1, 3, 70])  # streaming (1 row, several), the int8 GEMM / decoded path
def test_calls_spanning_depth_blocks_and_threads(isa, m):
    """K past the 1024-deep int8 blocks and the 512-deep exact slices, sizes that
    split over threads, odd edges."""
    n, k = 301, 2100
    a8, b8 = _operands(torch.int8, m, n, k, seed=4)
    got = hetero.scaled_gemm(a8, b8, None, None, out_dtype=torch.int32, backend="cpu")
    assert torch.equal(got, torch._int_mm(a8.contiguous(), b8))
    a, b = _operands(torch.float8_e5m2, m, n, k, seed=5)
    check_against_oracle("scaled_gemm", a, b, *scales("row", m, n, k, seed=6), backend="cpu")
    k = 1280
    a, b = _operands(torch.int8, m, n, k, seed=7)
    check_against_oracle("scaled_gemm", a, b, *scales("block", m, n, k, seed=8), backend="cpu",
                         out_dtype=torch.float32)
