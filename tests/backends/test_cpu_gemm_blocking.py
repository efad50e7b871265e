"""The native CPU GEMM's blocked driver: shapes that cross every block and sliver
boundary (MR=6, NR=16, MC=144, KC=256, NC=512), every kernel set this CPU runs,
thread grids over rows, columns and whole batch elements, and results that do not
depend on the thread count."""

import pytest
import torch

from hetero import _C
from hetero.backends.cpu import view
from hetero.testing import GEMM_LAYOUTS, check_within, gemm_error_bound, gemm_operands, poison_, randn

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def _isas():
    """The kernel sets this build and CPU can run."""
    previous, found = _C.cpu_isa(), []
    for name in ("portable", "avx2"):
        try:
            _C.set_cpu_isa(name)
            found.append(name)
        except ValueError:
            pass
    _C.set_cpu_isa(previous)
    return found


ISAS = _isas()


@pytest.fixture(params=ISAS)
def isa(request):
    previous = _C.set_cpu_isa(request.param)
    yield request.param
    _C.set_cpu_isa(previous)


def run(a, b, out, bias=None, alpha=1.0, beta=0.0, threads=1):
    _C.gemm(view(a), view(b), view(out), None if bias is None else view(bias), alpha, beta,
            threads)
    return out


def check(out, a, b, bias=None, alpha=1.0, beta=0.0):
    ref = alpha * (a.double() @ b.double())
    if bias is not None and beta != 0:
        ref = ref + beta * bias.double()
    check_within(out, ref, gemm_error_bound(a, b, bias, alpha, beta, out_dtype=out.dtype))


# M, N, K around MR/NR sliver edges and MC/KC/NC block edges, with primes.
EDGE_SHAPES = [(1, 1, 1), (6, 16, 1), (7, 17, 257), (149, 523, 263), (145, 33, 513),
               (5, 1031, 3), (290, 16, 256)]


@pytest.mark.parametrize("m,n,k", EDGE_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_block_edges(isa, m, n, k, dtype):
    a, b = randn(m, k, dtype=dtype, seed=1), randn(k, n, dtype=dtype, seed=2)
    check(run(a, b, poison_(torch.empty(m, n, dtype=dtype)), threads=2), a, b)


@pytest.mark.parametrize("layout", GEMM_LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_layouts_with_fast_packing_paths(isa, layout, dtype):
    # 150 x 530 x 270 gives full slivers (vector paths) and remainders together.
    a, b = gemm_operands(layout, 150, 530, 270, dtype=dtype)
    out = poison_(torch.empty(150, 530, dtype=torch.float32))
    bias = randn(150, 530, dtype=dtype, seed=9)
    check(run(a, b, out, bias, alpha=0.5, beta=2.0, threads=3), a, b, bias, 0.5, 2.0)


@pytest.mark.parametrize("threads", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("m,n", [(300, 20), (12, 1100), (160, 600)], ids=["rows", "cols", "grid"])
def test_results_do_not_depend_on_thread_count(isa, threads, m, n):
    # K is never split across threads, so every element sums in the same order.
    a, b = randn(m, 300, seed=3), randn(300, n, seed=4)
    want = run(a, b, poison_(torch.empty(m, n)), threads=1)
    got = run(a, b, poison_(torch.empty(m, n)), threads=threads)
    assert torch.equal(got, want)
    check(got, a, b)


@pytest.mark.parametrize("threads", [2, 3])
def test_many_small_batch_elements_dealt_out_whole(isa, threads):
    a = randn(1, 9, 20, 13, seed=5).expand(5, 9, 20, 13)  # stride-0 batch dim
    b = randn(5, 9, 13, 11, seed=6)
    out = poison_(torch.empty(5, 9, 20, 11, dtype=torch.bfloat16))
    run(a.to(torch.bfloat16), b.to(torch.bfloat16), out, threads=threads)
    check(out, a.to(torch.bfloat16), b.to(torch.bfloat16))


def test_large_batch_elements_share_threads(isa):
    a, b = randn(3, 200, 70, seed=7), randn(3, 70, 180, seed=8)
    check(run(a, b, poison_(torch.empty(3, 200, 180)), threads=2), a, b)


def test_isa_selection_errors_and_auto():
    with pytest.raises(ValueError, match="^isa: expected"):
        _C.set_cpu_isa("avx512-and-a-pony")
    previous = _C.set_cpu_isa("auto")
    assert _C.cpu_isa() == ISAS[-1]  # the best available is chosen
    _C.set_cpu_isa(previous)


def test_thread_count_must_be_positive():
    a, b = randn(2, 2), randn(2, 2)
    with pytest.raises(ValueError, match="^num_threads: expected >= 1, got 0"):
        run(a, b, torch.empty(2, 2), threads=0)
