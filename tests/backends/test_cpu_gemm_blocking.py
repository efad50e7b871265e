"""The native CPU GEMM's drivers, on every kernel set this CPU runs.

The BLIS path (backends/cpu/gemm.cpp): shapes that cross every block and sliver
boundary of the fp32 micro-kernels (MR=6, NR=16 in the portable and avx2 sets, MR=12,
NR=32 in avx512 and amx; MC=144, KC=256, NC=512; packed 16 values of k at a time), of the
avx512 set's bf16 pair-dot one (MR=8, NR=48, MC=96, KC=1024, NC=480; odd depths,
whose last pair is half padding) and of the amx set's tiles (MR=NR=32, MC=256, KC=512,
NC=512; depths padded to 32), thread grids over rows (one Bp packed together),
columns (each thread packing its Bp as it uses it) and whole batch elements, and
results that do not depend on the thread count, and fp32 results that do not depend on
which FMA kernel set computed them.

The weight-streaming path (backends/cpu/gemm_weight_stream.cpp; bf16 x @ w.t(): the
amx set's tiles, 3 to 128 rows, K a multiple of 32; the avx512 set's vdpbf16ps tiles of
6 rows of w x 64 rows of x and 12 x 32 or 12 x 16 for the last rows, 20 to 512 rows, K
even): row counts around its tiles (16, 32, 64) and limits, columns around its chunks of w (24, 32 rows) and stores (192, 256
columns), depths whose pairs end on a partial 64-byte line of w, a w whose rows are
further apart than K, and the epilogue; on the other sets the same calls check whatever
path serves them.

The small-M path (backends/cpu/gemm_small_m.cpp, at most 48 rows, 32 in the avx512 and
amx sets, with b unit-stride along k or n): row counts around its tiles (4, 3, 2, 1 rows),
columns around its blocks (24, 96) and chunk (2016), depths around its vector width
(8), its bf16 pair groups (16) and blocks (64, 4096, 8192), bf16/fp16 weights widened
once per block (more than 16 rows for bf16, 8 for fp16), and the same thread-count
independence (one test for both paths)."""

import pytest
import torch

from hetero import _C
from hetero.backends.cpu import view
from hetero.ops.gemm.checks import GEMM_LAYOUTS, gemm_operands
from hetero.ops.gemm.numerics import gemm_error_bound
from hetero.testing import check_within, poison_, randn

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def run(a, b, out, bias=None, alpha=1.0, beta=0.0, threads=1):
    _C.gemm(view(a), view(b), view(out), None if bias is None else view(bias), alpha, beta,
            threads)
    return out


def check(out, a, b, bias=None, alpha=1.0, beta=0.0):
    ref = alpha * (a.double() @ b.double())
    if bias is not None and beta != 0:
        ref = ref + beta * bias.double()
    check_within(out, ref, gemm_error_bound(a, b, bias, alpha, beta, out_dtype=out.dtype))


# M, N, K around MR/NR sliver edges and MC/KC/NC block edges, with primes: the
# fp32 tiles first (6 x 16, then 12 x 32 and its 16-deep packing), then the bf16
# pair-dot tiles, then the AMX tiles (the last one splits its rows between two threads).
EDGE_SHAPES = [(1, 1, 1), (6, 16, 1), (7, 17, 257), (149, 523, 263), (145, 33, 513),
               (5, 1031, 3), (290, 16, 256), (12, 32, 16), (13, 63, 47), (155, 97, 273),
               (8, 48, 2), (9, 49, 1025), (97, 481, 1023), (193, 97, 2049), (56, 960, 17),
               (32, 32, 32), (33, 65, 31), (257, 545, 545), (300, 32, 600)]


@pytest.mark.parametrize("b_strides", ["contiguous", "no unit stride"])
@pytest.mark.parametrize("m,n,k", EDGE_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_block_edges(isa, m, n, k, dtype, b_strides):
    # A b with no unit stride keeps the shapes of at most 48 rows on the BLIS path
    # too (contiguous, they take the small-M path).
    a, b = randn(m, k, dtype=dtype, seed=1), randn(k, n, dtype=dtype, seed=2)
    if b_strides == "no unit stride":
        b = randn(k, 2 * n, dtype=dtype, seed=2)[:, ::2]
    check(run(a, b, poison_(torch.empty(m, n, dtype=dtype)), threads=2), a, b)


@pytest.mark.parametrize("layout", GEMM_LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_layouts_with_fast_packing_paths(isa, layout, dtype):
    # 150 x 530 x 271 gives full slivers (vector paths) and remainders together, and
    # an odd depth (bf16 pairs end in a half-padded one).
    a, b = gemm_operands(layout, 150, 530, 271, dtype=dtype)
    out = poison_(torch.empty(150, 530, dtype=torch.float32))
    bias = randn(150, 530, dtype=dtype, seed=9)
    check(run(a, b, out, bias, alpha=0.5, beta=2.0, threads=3), a, b, bias, 0.5, 2.0)


THREAD_CASES = {  # id: (m, n, layout); BLIS thread grids, then the small-M path
    "rows": (300, 20, "x@w"), "cols": (60, 1100, "x@w"), "grid": (160, 600, "x@w"),
    **{f"small-M {layout} m={m}": (m, 1000, layout) for layout in ("x@w.t()", "x@w")
       for m in (1, 5, 30)},
}


@pytest.mark.parametrize("threads", [2, 3, 4, 7])
@pytest.mark.parametrize("case", THREAD_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_results_do_not_depend_on_thread_count(isa, threads, case, dtype):
    # K is never split across threads, and the small-M kernels sum each element the
    # same way in every tile, so every element sums in the same order.
    m, n, layout = THREAD_CASES[case]
    a = randn(m, 300, dtype=dtype, seed=3)
    b = randn(n, 300, dtype=dtype, seed=4).t() if layout == "x@w.t()" else randn(300, n, dtype=dtype, seed=4)
    want = run(a, b, poison_(torch.empty(m, n)), threads=1)
    got = run(a, b, poison_(torch.empty(m, n)), threads=threads)
    assert torch.equal(got, want)
    check(got, a, b)


FMA_SETS = [name for name in _C.cpu_isas().split(",") if name != "portable"]


@pytest.mark.skipif(len(FMA_SETS) < 2, reason="this CPU runs one FMA kernel set")
@pytest.mark.parametrize("layout", GEMM_LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_fp32_tiles_agree_bit_for_bit_across_sets(layout, dtype):
    # Every fp32 tile sums each element over the same KC blocks in order, one FMA at a
    # time, so the 6 x 16 and 12 x 32 micro-kernels give the same bits (the portable
    # set multiplies and adds separately, so it is left out).
    a, b = gemm_operands(layout, 150, 530, 600, dtype=dtype)
    previous = _C.cpu_isa()
    try:
        outs = []
        for name in FMA_SETS:
            _C.set_cpu_isa(name)
            outs.append(run(a, b, poison_(torch.empty(150, 530)), threads=2))
    finally:
        _C.set_cpu_isa(previous)
    check(outs[0], a, b)
    assert all(torch.equal(out, outs[0]) for out in outs[1:])


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("m,k,n", [(20, 13, 11), (64, 64, 40), (64, 45, 40)])
def test_many_small_batch_elements_dealt_out_whole(isa, threads, m, k, n):
    # 64 rows take the BLIS path (fewer, the small-M one), where a bf16 b with
    # contiguous rows is packed a whole panel at a time even by a thread alone.
    a = randn(1, 9, m, k, seed=5).expand(5, 9, m, k)  # stride-0 batch dim
    b = randn(5, 9, k, n, seed=6)
    out = poison_(torch.empty(5, 9, m, n, dtype=torch.bfloat16))
    run(a.to(torch.bfloat16), b.to(torch.bfloat16), out, threads=threads)
    check(out, a.to(torch.bfloat16), b.to(torch.bfloat16))


def test_large_batch_elements_share_threads(isa):
    a, b = randn(3, 200, 70, seed=7), randn(3, 70, 180, seed=8)
    check(run(a, b, poison_(torch.empty(3, 200, 180)), threads=2), a, b)


def test_isa_selection_errors_and_auto():
    with pytest.raises(ValueError, match="^isa: expected"):
        _C.set_cpu_isa("avx512-and-a-pony")
    previous = _C.set_cpu_isa("auto")
    assert _C.cpu_isa() == _C.cpu_isas().split(",")[-1]  # the best available is chosen
    _C.set_cpu_isa(previous)


def test_thread_count_must_be_positive():
    a, b = randn(2, 2), randn(2, 2)
    with pytest.raises(ValueError, match="^num_threads: expected >= 1, got 0"):
        run(a, b, torch.empty(2, 2), threads=0)


# ---------------------------------------------------------------- weight stream

@pytest.mark.parametrize("m", [3, 15, 16, 17, 20, 33, 48, 64, 65, 97, 128, 129, 512, 513])
@pytest.mark.parametrize("n,k", [(32, 32), (45, 64), (300, 1024), (520, 96), (25, 34), (13, 2)])
def test_weight_stream_rows_and_chunks(isa, m, n, k):
    a = randn(m, k, dtype=torch.bfloat16, seed=31)
    b = randn(n, k, dtype=torch.bfloat16, seed=32).t()
    check(run(a, b, poison_(torch.empty(m, n, dtype=torch.bfloat16)), threads=2), a, b)


@pytest.mark.parametrize("a_layout", ["contiguous", "transposed"])
def test_weight_stream_strided_weight_and_epilogue(isa, a_layout):
    # w's rows 2K apart (a slice of a wider weight), a in either layout, batched with a
    # shared weight, and bias, alpha, beta into a float32 output.
    m, n, k = 20, 70, 64
    w = randn(n, 2 * k, dtype=torch.bfloat16, seed=33)[:, :k]
    a = (randn(2, m, k, dtype=torch.bfloat16, seed=34) if a_layout == "contiguous"
         else randn(2, k, m, dtype=torch.bfloat16, seed=34).transpose(1, 2))
    b = w.t().expand(2, k, n)
    bias = randn(2, m, n, dtype=torch.bfloat16, seed=35)
    out = poison_(torch.empty(2, m, n))
    check(run(a, b, out, bias, alpha=0.5, beta=2.0, threads=3), a, b, bias, 0.5, 2.0)


# ---------------------------------------------------------------- small-M path

SMALL_M_ROWS = [1, 2, 3, 4, 5, 7, 16, 17, 23, 48]


@pytest.mark.parametrize("layout", ["x@w.t()", "x@w"])
@pytest.mark.parametrize("m", SMALL_M_ROWS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_small_m_rows_and_tiles(isa, layout, m, dtype):
    # N = 97 leaves a partial 24-column dot block, a partial 96-column axpy block
    # and a 1-column tail; K = 4103 crosses the dot depth block (4096 beyond 4
    # rows) and the axpy one (64) and ends on a partial vector.
    n, k = 97, 4103
    a = randn(m, k, dtype=dtype, seed=11)
    b = randn(n, k, dtype=dtype, seed=12).t() if layout == "x@w.t()" else randn(k, n, dtype=dtype, seed=12)
    check(run(a, b, poison_(torch.empty(m, n, dtype=dtype)), threads=2), a, b)


@pytest.mark.parametrize("layout", ["x@w.t()", "x@w"])
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (2, 5, 8193), (3, 2017, 9), (1, 4100, 5), (6, 13, 65),
                                   (1, 31, 7), (1, 9, 32), (4, 50, 31), (16, 30, 47)])
def test_small_m_blocks_and_chunks(isa, layout, m, n, k):
    # bf16 weights: the AVX2 dot kernel widens whole groups of 16 as even/odd pairs,
    # so depths also end on a group (32), one vector past it (31 = 16 + 8 + 7) and
    # between (47).
    a = randn(m, k, dtype=torch.bfloat16, seed=13)
    b = (randn(n, k, dtype=torch.bfloat16, seed=14).t() if layout == "x@w.t()"
         else randn(k, n, dtype=torch.bfloat16, seed=14))
    check(run(a, b, poison_(torch.empty(m, n)), threads=3), a, b)


@pytest.mark.parametrize("layout", GEMM_LAYOUTS + ("b strided",))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_small_m_layouts_bias_alpha_beta(isa, layout, dtype):
    # Both b layouts of the small-M path, a in any strides, and a b with no unit
    # stride (which the BLIS path serves), with the epilogue.
    m, n, k = 5, 70, 45
    if layout == "b strided":
        a, b = randn(m, k, dtype=dtype, seed=15), randn(2 * k, 3 * n, dtype=dtype, seed=16)[::2, ::3]
    else:
        a, b = gemm_operands(layout, m, n, k, dtype=dtype)
    out = poison_(torch.empty(m, n, dtype=torch.float32))
    bias = randn(m, n, dtype=dtype, seed=17)
    check(run(a, b, out, bias, alpha=0.5, beta=2.0, threads=2), a, b, bias, 0.5, 2.0)


@pytest.mark.parametrize("threads", [1, 3])
def test_small_m_batched_decode(isa, threads):
    # Batched decode: one row per batch element against a shared (stride-0) weight.
    a = randn(6, 1, 200, dtype=torch.bfloat16, seed=20)
    w = randn(150, 200, dtype=torch.bfloat16, seed=21)
    b = w.t().expand(6, 200, 150)
    out = poison_(torch.empty(6, 1, 150, dtype=torch.bfloat16))
    check(run(a, b, out, threads=threads), a, b)


# The most rows the small-M path takes for fp32 (kernels.h FloatGemm::small_m_rows).
SMALL_M_LIMIT = {"portable": 48, "avx2": 48, "avx512": 32, "amx": 32}


def test_x_at_w_t_up_to_the_small_m_limit_sums_in_8_partial_sums(isa):
    # Where the small-M dot path serves (x @ w.t() up to the set's limit), each output
    # sums k in 8 interleaved partial sums: 1e8 at k = 0 and -1e8 at k = 8 cancel in
    # one lane, and the seven 1s survive. Summed in order (the BLIS path, one row
    # more), each 1 is absorbed by 1e8 and the result is 0.
    x = torch.tensor([1e8, 1, 1, 1, 1, 1, 1, 1, -1e8])
    w = torch.ones(3, 9)
    limit = SMALL_M_LIMIT[isa]
    for m, want in [(1, 7.0), (limit, 7.0), (limit + 1, 0.0)]:
        out = run(x.expand(m, 9), w.t(), poison_(torch.empty(m, 3)))
        assert torch.equal(out, torch.full((m, 3), want)), m
