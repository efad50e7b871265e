"""The scaled_gemm op itself: recipes told apart by the scales' shapes (PyTorch's and
hetero's block layout), named errors for bad input, the numerics at the edges, and the
oracle agreeing with torch._scaled_mm / torch._int_mm where PyTorch computes them."""

from __future__ import annotations

import math

import pytest
import torch

import hetero
from hetero.ops.scaled_gemm import pytorch
from hetero.ops.scaled_gemm.api import prepare
from hetero.ops.scaled_gemm.conformance import quantized, scales
from hetero.ops.scaled_gemm.numerics import FORMATS, error_bound, reference
from hetero.testing import check_within

E4M3 = torch.float8_e4m3fn


def _recipe(m, n, k, scale_a, scale_b, dtype=E4M3):
    a, b = quantized((m, k), dtype, 1), quantized((k, n), dtype, 2)
    _, record = prepare(a, b, scale_a, scale_b, None, None, None, None)
    return record


@pytest.mark.parametrize("scale_a, scale_b, recipe", [
    (torch.tensor(2.0), torch.tensor(0.5), "tensor"),
    (torch.ones(1), torch.ones(1, 1), "tensor"),
    (torch.ones(5, 1), torch.ones(1, 7), "row"),
    (torch.ones(5, 2), torch.ones(2, 1), "block"),
    (torch.ones(2, 5).t(), torch.ones(1, 4).t(), "block"),  # CUDA's outer-dim-major, padded
])
def test_recipes_are_told_apart_by_the_scales_shapes(scale_a, scale_b, recipe):
    record = _recipe(5, 7, 256, scale_a, scale_b)
    assert record.recipe == recipe
    assert record.out.dtype is torch.bfloat16  # the default out_dtype


def test_a_padded_block_scale_reads_only_its_blocks():
    a, b = quantized((3, 256), E4M3, 1), quantized((256, 5), E4M3, 2)
    sa = torch.rand(3, 2) + 0.5
    sb = torch.cat([torch.rand(2, 1) + 0.5, torch.full((2, 1), math.nan)])  # padding: NaN
    out = hetero.scaled_gemm(a, b, sa, sb, backend="reference", out_dtype=torch.float32)
    want = hetero.scaled_gemm(a, b, sa, sb[:2], backend="reference", out_dtype=torch.float32)
    assert torch.equal(out, want) and not out.isnan().any()


@pytest.mark.parametrize("dtype", [E4M3, torch.float8_e5m2, torch.float8_e4m3fnuz,
                                   torch.float8_e5m2fnuz], ids=str)
@pytest.mark.parametrize("recipe", ["tensor", "row"])
def test_the_oracle_agrees_with_torch_scaled_mm(dtype, recipe):
    m, n, k = 9, 13, 70
    a, b = quantized((m, k), dtype, 3), quantized((n, k), dtype, 4).t()
    sa, sb = scales(recipe, m, n, k, seed=5)
    refused = pytorch.refusal("cpu", dtype, recipe)
    if refused:
        pytest.skip(refused)
    _, record = prepare(a, b, sa, sb, None, torch.float32, None, None)
    exact = reference(record, torch.float64)
    theirs = torch._scaled_mm(a, b, sa, sb, out_dtype=torch.float32)
    check_within(theirs, exact, error_bound(record, exact))


def test_the_oracle_agrees_with_torch_int_mm():
    a, b = quantized((17, 64), torch.int8, 1), quantized((64, 9), torch.int8, 2)
    got = hetero.scaled_gemm(a, b, None, None, out_dtype=torch.int32, backend="reference")
    assert torch.equal(got, torch._int_mm(a, b))


def test_nan_and_inf_encodings_and_the_largest_values():
    for dtype, (largest, nans, inf) in FORMATS.items():
        codes = torch.tensor(list(nans) + ([inf] if inf is not None else []),
                             dtype=torch.uint8)
        values = codes.view(dtype).float()
        assert values[:len(nans)].isnan().all(), dtype
        if inf is not None:
            assert values[-1] == math.inf
        big = torch.tensor([largest]).to(dtype)
        assert big.float().item() == largest, dtype
        a = big.expand(2, 64).contiguous()  # saturation: 64 * largest^2 stays finite
        out = hetero.scaled_gemm(a, a.t(), torch.ones(1), torch.ones(1),
                                 out_dtype=torch.float32, backend="reference")
        assert torch.equal(out, torch.full((2, 2), 64 * largest**2))


def test_zero_and_negative_scales_and_float16_overflow():
    a, b = quantized((2, 8), E4M3, 1), quantized((8, 3), E4M3, 2)
    zero = hetero.scaled_gemm(a, b, torch.zeros(1), torch.ones(1), backend="reference")
    assert torch.equal(zero, torch.zeros(2, 3, dtype=torch.bfloat16))
    plus = hetero.scaled_gemm(a, b, torch.ones(1), torch.ones(1), backend="reference")
    minus = hetero.scaled_gemm(a, b, -torch.ones(1), torch.ones(1), backend="reference")
    assert torch.equal(minus, -plus)
    big = torch.full((1, 4), 448.0).to(E4M3)
    out = hetero.scaled_gemm(big, big.t(), torch.ones(1), torch.ones(1),
                             out_dtype=torch.float16, backend="reference")
    assert out.item() == math.inf  # 4 * 448^2 is beyond float16: rounded, not clamped


@pytest.mark.parametrize("args, kwargs, error, argument", [
    ((quantized((4, 8), E4M3, 1), quantized((8, 3), E4M3, 2), torch.ones(4, 1),
      torch.ones(3, 1)), {}, ValueError, "scale_b"),
    ((quantized((4, 8), E4M3, 1), quantized((8, 3), E4M3, 2), torch.ones(3, 1),
      torch.ones(1, 3)), {}, ValueError, "scale_a"),
    ((quantized((4, 256), E4M3, 1), quantized((256, 3), E4M3, 2), torch.ones(4, 1),
      torch.ones(2, 1)), {}, ValueError, "scale_a"),  # block scale_b, row-like scale_a
    ((quantized((4, 8), E4M3, 1), quantized((8, 3), E4M3, 2), torch.ones(1, dtype=torch.half),
      torch.ones(1)), {}, TypeError, "scale_a"),
    ((quantized((4, 8), E4M3, 1), quantized((8, 3), torch.float8_e4m3fnuz, 2), torch.ones(1),
      torch.ones(1)), {}, TypeError, "b"),
    ((quantized((4, 8), E4M3, 1), quantized((8, 3), E4M3, 2), torch.ones(1), torch.ones(1)),
     {"out_dtype": torch.int32}, TypeError, "out_dtype"),
    ((quantized((4, 8), torch.int8, 1), quantized((8, 3), torch.int8, 2), None, None),
     {"bias": torch.ones(3), "out_dtype": torch.int32}, TypeError, "out_dtype"),
    ((quantized((4, 8), E4M3, 1), quantized((8, 3), E4M3, 2), torch.ones(1), torch.ones(1)),
     {"bias": torch.ones(3, dtype=torch.int32)}, TypeError, "bias"),
    ((quantized((4, 8), E4M3, 1), quantized((8, 3), E4M3, 2), torch.ones(1), torch.ones(1)),
     {"out": torch.empty(4, 3)}, TypeError, "out"),
    ((quantized((4, 8), E4M3, 1)[0], quantized((8, 3), E4M3, 2), torch.ones(1),
      torch.ones(1)), {}, ValueError, "a"),
    ((quantized((4, 8), E4M3, 1), "b", torch.ones(1), torch.ones(1)), {}, TypeError, "b"),
    ((quantized((4, 8), E4M3, 1), quantized((8, 3), E4M3, 2), torch.ones(1), torch.ones(1)),
     {"bias": [1.0, 2.0, 3.0]}, TypeError, "bias"),
])
def test_bad_input_names_the_argument(args, kwargs, error, argument):
    with pytest.raises(error, match=f"^{argument}:"):
        hetero.scaled_gemm(*args, **kwargs)


def test_nothing_the_caller_passed_is_modified_and_no_autograd():
    a, b = quantized((3, 8), E4M3, 1), quantized((8, 2), E4M3, 2)
    sa = torch.ones(3, 1, requires_grad=False)
    hetero.scaled_gemm(a, b, sa, torch.ones(1, 2))
    assert torch.equal(sa, torch.ones(3, 1))
    with pytest.raises(RuntimeError, match="does not record autograd"):
        hetero.scaled_gemm(a, b, sa, torch.ones(1, 2), bias=torch.ones(2).requires_grad_())
