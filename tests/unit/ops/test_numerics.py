"""The ops' FLOP and byte counts and error bounds (``OpSpec.flops``/``min_bytes``/
``error_bound``), which counters, the benchmark and the conformance suite use."""

from __future__ import annotations

import pytest
import torch

import hetero
from hetero.ops import spec
from hetero.ops.attention.numerics import attention_flops
from hetero.ops.gemm.numerics import gemm_flops
from hetero.testing import randn


@pytest.mark.parametrize("sq,sk", [(1, 1), (5, 5), (3, 8), (8, 3), (7, 1), (1, 9)])
@pytest.mark.parametrize("causal", [False, True])
def test_attention_flops_count_visible_pairs(sq, sk, causal):
    visible = torch.ones(sq, sk, dtype=torch.bool)
    if causal:
        visible = visible.tril(sk - sq)  # bottom-right, as hetero's causal
    pairs = int(visible.sum())
    assert attention_flops(6, sq, sk, 16, 8, causal) == 2 * 6 * pairs * (16 + 8)


def test_gemm_flops():
    assert gemm_flops(3, 5, 7, batch=2) == 2 * 2 * 3 * 5 * 7


def test_flops_and_bytes_of_a_call():
    a, b = randn(2, 1, 3, 7), randn(7, 5)  # a's batch dim broadcasts b
    _, args = spec("gemm").bind(a, b)
    assert spec("gemm").flops(args) == 2 * 2 * 3 * 5 * 7
    assert spec("gemm").min_bytes(args) == 4 * (2 * 3 * 7 + 7 * 5 + 2 * 3 * 5)  # b read once
    q, k = randn(1, 4, 3, 8), randn(1, 2, 6, 8)
    _, args = spec("attention").bind(q, k, k, causal=True)
    assert spec("attention").flops(args) == attention_flops(4, 3, 6, 8, 8, True)
    assert spec("attention").min_bytes(args) == 4 * (2 * 4 * 3 * 8 + 2 * 2 * 6 * 8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_error_bounds_pass_the_reference_and_catch_a_wrong_result(dtype):
    for op, args, kwargs in (("gemm", (randn(9, 33, dtype=dtype), randn(33, 5, dtype=dtype)),
                              {}),
                             ("attention", (randn(1, 2, 5, 16, dtype=dtype),) * 3,
                              {"causal": True})):
        _, record = spec(op).bind(*args, **kwargs)
        exact = spec(op).reference(record, torch.float64)
        bound = spec(op).error_bound(record, exact)
        result = getattr(hetero, op)(*args, **kwargs, backend="reference")
        hetero.testing.check_within(result, exact, bound)
        wrong = result.clone()
        wrong.view(-1)[0] += 4.0
        with pytest.raises(AssertionError, match="out of bound"):
            hetero.testing.check_within(wrong, exact, bound)
