"""The cpu backend through the public op: hetero.gemm(..., backend="cpu") against the
float64 oracle, on random data with poisoned outputs, across awkward shapes and views."""

from __future__ import annotations

import pytest
import torch

import hetero
from hetero.ops.gemm.checks import GEMM_LAYOUTS, gemm_operands
from hetero.ops.gemm.numerics import gemm_error_bound
from hetero.testing import check_within, poison_, randn

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
SHAPES = [(1, 1, 1), (1, 7, 13), (13, 1, 7), (7, 13, 1), (17, 31, 23), (33, 65, 47),
          (64, 64, 64), (5, 3, 257)]  # (M, N, K): 1s, primes, non-multiples of 16, large K


def _check(a, b, out, bias=None, alpha=1.0, beta=1.0):
    ref = hetero.reference_gemm(a, b, bias, alpha, beta)
    check_within(out, ref, gemm_error_bound(a, b, bias, alpha, beta, out_dtype=out.dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("m, n, k", SHAPES)
def test_gemm_shapes(dtype, m, n, k):
    a, b = randn(m, k, dtype=dtype, seed=m), randn(k, n, dtype=dtype, seed=n)
    out = poison_(torch.empty(m, n, dtype=dtype))
    hetero.gemm(a, b, out=out, backend="cpu")
    _check(a, b, out)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", GEMM_LAYOUTS)
def test_gemm_views_are_taken_as_they_are(dtype, layout):
    a, b = gemm_operands(layout, 19, 11, 29, dtype=dtype)
    out = hetero.gemm(a, b, backend="cpu")
    _check(a, b, out)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gemm_batched_with_broadcast_bias_alpha_beta_and_strided_out(dtype):
    a = randn(3, 1, 9, 14, dtype=dtype, seed=1)  # batch dims broadcast to (3, 4)
    b = randn(4, 14, 6, dtype=dtype, seed=2)
    bias = randn(6, dtype=dtype, seed=3)
    storage = poison_(torch.empty(3, 4, 9, 12, dtype=dtype))
    out = storage[..., ::2]  # every other column: a strided out= view
    result = hetero.gemm(a, b, bias=bias, alpha=0.5, beta=-2.0, out=out, backend="cpu")
    assert result is out
    _check(a, b, out, bias, 0.5, -2.0)
    assert torch.isnan(storage[..., 1::2]).all()  # nothing written outside out


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_gemm_low_precision_inputs_into_float32_out(dtype):
    a, b = randn(21, 37, dtype=dtype, seed=1), randn(37, 10, dtype=dtype, seed=2)
    out = poison_(torch.empty(21, 10, dtype=torch.float32))
    hetero.gemm(a, b, bias=randn(21, 1, seed=3), out=out, backend="cpu")
    _check(a, b, out, randn(21, 1, seed=3))


def test_gemm_beta_zero_ignores_nan_bias_and_nan_inputs_propagate():
    a, b = randn(4, 5, seed=1), randn(5, 6, seed=2)
    out = hetero.gemm(a, b, bias=torch.full((6,), float("nan")), beta=0.0, backend="cpu")
    assert not torch.isnan(out).any()
    a[2, 3] = float("nan")
    out = hetero.gemm(a, b, backend="cpu")
    assert torch.isnan(out[2]).all() and not torch.isnan(out[[0, 1, 3]]).any()


def test_gemm_default_dispatch_on_cpu_uses_the_native_kernel():
    a, b = randn(8, 8), randn(8, 8)
    assert hetero.explain("gemm", a, b).chosen.qualname == "cpu.gemm"


def test_thread_count_follows_torch_unless_hetero_num_threads_is_set(hetero_env, monkeypatch):
    from hetero.backends import cpu

    monkeypatch.setattr(torch, "get_num_threads", lambda: 5)
    assert cpu.num_threads() == 5
    hetero_env(HETERO_NUM_THREADS="3")
    assert cpu.num_threads() == 3
    a, b = randn(40, 50, seed=1), randn(50, 60, seed=2)  # still correct on 3 threads
    check_within(hetero.gemm(a, b), a.double() @ b.double(),
                 gemm_error_bound(a, b, out_dtype=torch.float32))
