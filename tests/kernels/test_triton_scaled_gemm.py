"""The Triton scaled_gemm kernel (``hetero/kernels/triton/scaled_gemm.py``), through
``hetero.scaled_gemm(backend="triton")`` and called directly, checked against the float64
oracle within the op's bound, outputs NaN-poisoned first (``check_against_oracle``).

Without a GPU it runs under Triton's CPU interpreter (``TRITON_INTERPRET=1``, set by
tests/conftest.py), where fp8 operands are decoded from their bits in the kernel; the
native fp8 ``tl.dot`` path is checked there too, on finite inputs (the interpreter's own
fp8 dot maps NaN and inf encodings to numbers). With a GPU the same tests run on it.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

import hetero
from hetero.kernels.triton import interpreting
from hetero.ops.scaled_gemm.api import FP8_DTYPES
from hetero.ops.scaled_gemm.conformance import quantized, scales
from hetero.ops.scaled_gemm.numerics import FORMATS
from hetero.testing import check_against_oracle, poison_

HAVE_TRITON = importlib.util.find_spec("triton") is not None
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
GPU = DEVICE == "cuda"
pytestmark = [
    pytest.mark.skipif(not HAVE_TRITON, reason="triton is not installed"),
    pytest.mark.skipif(not GPU and not interpreting(),
                       reason="no GPU and TRITON_INTERPRET is not set"),
]
if HAVE_TRITON:
    from hetero.kernels.triton import scaled_gemm as S

FP8_HERE = not GPU or torch.version.hip is not None or \
    torch.cuda.get_device_capability() >= (8, 9)
DTYPES = [pytest.param(d, id=str(d).removeprefix("torch."), marks=pytest.mark.skipif(
    d in FP8_DTYPES and not FP8_HERE, reason="fp8 needs sm89+")) for d in (*FP8_DTYPES,
                                                                           torch.int8)]
BF16, F16, F32 = torch.bfloat16, torch.float16, torch.float32


def operands(dtype, recipe, m, n, k, *, seed=0, b_t=True, a_t=False, signs=False):
    """a (M, K), b (K, N) (``b_t``: as w.t() of an (N, K) weight), the recipe's scales."""
    a = quantized((m, k), dtype, seed, layout_t=a_t).to(DEVICE)
    b = quantized((k, n), dtype, seed + 1, layout_t=b_t).to(DEVICE)
    sa, sb = (s.to(DEVICE) for s in scales(recipe, m, n, k, seed + 2, signs))
    if dtype is torch.int8:
        sa = sa / 256  # int8 sums reach 1e5: keep float16 results finite
    return a, b, sa, sb


def check(a, b, sa, sb, **kwargs):
    return check_against_oracle("scaled_gemm", a, b, sa, sb, backend="triton", **kwargs)


# -- dtypes × recipes on awkward shapes ----------------------------------------------------

SHAPES = [(1, 1, 1), (1, 17, 5), (13, 7, 29), (3, 5, 131), (37, 19, 65), (33, 40, 97)]
BLOCK_SHAPES = [(1, 1, 128), (5, 7, 128), (13, 131, 256), (2, 129, 384)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("recipe", ["tensor", "row"])
@pytest.mark.parametrize("m, n, k", SHAPES)
def test_tensor_and_row_recipes(dtype, recipe, m, n, k):
    check(*operands(dtype, recipe, m, n, k, seed=m + n + k))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m, n, k", BLOCK_SHAPES)
def test_block_recipe(dtype, m, n, k):
    check(*operands(dtype, "block", m, n, k, seed=m + n + k))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("recipe", ["tensor", "row", "block"])
def test_layouts_and_strided_scales(dtype, recipe):
    m, n, k = 19, 35, 256
    a, b, sa, sb = operands(dtype, recipe, m, n, k, a_t=True, b_t=False, signs=True)
    check(a, b, sa, sb)
    # Sliced operands and scales with strides of their own (block: outer-dim-major
    # scales, as torch._scaled_mm's CUDA path lays them out).
    wide_a = quantized((m, 2 * k), dtype, 5).to(DEVICE)[:, ::2]
    wide_b = quantized((2 * n, k), dtype, 6).to(DEVICE)[::2].t()
    sa2 = torch.empty(sa.shape[::-1], device=DEVICE).t().copy_(sa)
    sb2 = torch.cat([sb, sb], 0)[::2] if recipe != "block" else \
        torch.empty(sb.shape[::-1], device=DEVICE).t().copy_(sb)
    check(wide_a, wide_b, sa2, sb2)


# -- bias, out dtypes, edges ---------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("out_dtype", [BF16, F16, F32], ids=str)
@pytest.mark.parametrize("bias_dtype", [None, BF16, F16, F32], ids=str)
def test_bias_and_out_dtypes(dtype, out_dtype, bias_dtype):
    a, b, sa, sb = operands(dtype, "row", 21, 18, 77, seed=3)
    bias = None if bias_dtype is None else \
        torch.randn(18, generator=torch.Generator().manual_seed(4)).to(bias_dtype).to(DEVICE)
    check(a, b, sa, sb, bias=bias, out_dtype=out_dtype)


def test_bfloat16_results_round_to_nearest_even():
    # Sums exact in float32 (small integers): the result must be the float32 sum cast to
    # bfloat16, bit for bit — ties (257, 259, 261) go to the even neighbour.
    values = torch.tensor([[256.0, 1, 0], [256.0, 3, 0], [256.0, 5, 0], [-256.0, -1, 0],
                           [1.0, 0.5, 2**-9]])
    a = values.to(torch.float8_e4m3fn).to(DEVICE)
    b = torch.ones(3, 2).to(torch.float8_e4m3fn).to(DEVICE)
    one = torch.ones((), device=DEVICE)
    out = hetero.scaled_gemm(a, b, one, one, backend="triton")
    expected = (a.float() @ b.float()).to(BF16)
    assert torch.equal(out.view(torch.int16), expected.view(torch.int16)), (out, expected)


@pytest.mark.parametrize("dtype", [pytest.param(d, id=str(d)) for d in FP8_DTYPES])
def test_every_fp8_encoding_decodes_exactly(dtype):
    # out[i, 0] = code_i * 1: the decoder meets torch's decoding of all 256 bytes,
    # NaN and infinities included.
    a = torch.arange(256, dtype=torch.uint8).view(dtype).reshape(256, 1).to(DEVICE)
    b = torch.ones(1, 1).to(dtype).to(DEVICE)
    one = torch.ones((), device=DEVICE)
    out = hetero.scaled_gemm(a, b, one, one, out_dtype=F32, backend="triton")
    ref = a.float()
    same = (out == ref) | (out.isnan() & ref.isnan())
    assert same.all(), torch.nonzero(~same).flatten().tolist()


@pytest.mark.parametrize("dtype", [pytest.param(d, id=str(d)) for d in FP8_DTYPES])
@pytest.mark.parametrize("recipe", ["tensor", "row", "block"])
def test_nan_and_inf_encodings_propagate(dtype, recipe):
    a, b, sa, sb = operands(dtype, recipe, 9, 11, 128, seed=7)
    largest, nans, inf = FORMATS[dtype]
    a, b = a.clone(), b.clone()
    a.view(torch.uint8)[2, 5] = nans[-1]
    b.view(torch.uint8)[7, 3] = nans[0]
    if inf is not None:
        a.view(torch.uint8)[6, 0] = inf
    out = check(a, b, sa, sb, out_dtype=F32)
    assert out[2].isnan().all() and out[:, 3].isnan().all()


def test_int32_results_are_exact():
    a, b, _, _ = operands(torch.int8, "tensor", 7, 33, 300)
    out = check(a, b, None, None, out_dtype=torch.int32)
    assert torch.equal(out, (a.long() @ b.long()).int())


def test_int8_sums_beyond_int32s_reach_go_tile_by_tile(monkeypatch):
    monkeypatch.setattr(S, "_INT_EXACT_K", 64)  # the PER_TILE path, on a small K
    check(*operands(torch.int8, "row", 5, 9, 200), out_dtype=F32)


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_problems_and_k_zero(dtype):
    for m, n in ((0, 5), (4, 0)):
        check(*operands(dtype, "row", m, n, 3))
    a, b, sa, sb = operands(dtype, "tensor", 4, 6, 0)
    check(a, b, sa, sb)
    check(a, b, sa, sb, bias=torch.randn(6, device=DEVICE))


# -- the native fp8 path, the kernels declared -----------------------------------------------

@pytest.mark.skipif(GPU, reason="the GPU runs its native path in every test")
@pytest.mark.parametrize("dtype", [pytest.param(d, id=str(d)) for d in FP8_DTYPES])
@pytest.mark.parametrize("recipe", ["tensor", "row", "block"])
def test_native_fp8_dot_path_on_finite_inputs(dtype, recipe):
    # What GPUs run (fp8 tiles straight into tl.dot), on inputs without NaN or inf.
    from hetero.ops.scaled_gemm.api import ScaledGemmArgs
    from hetero.ops.scaled_gemm.numerics import error_bound, reference
    from hetero.testing import check_within

    m, n, k = 21, 37, 256
    a, b, sa, sb = operands(dtype, recipe, m, n, k, seed=11)
    sa, sb = (s.reshape(1, 1) for s in (sa, sb)) if recipe == "tensor" else (sa, sb)
    bias = torch.randn(n).to(F16)
    out = poison_(torch.empty(m, n, dtype=BF16))
    S.scaled_gemm(a, b, sa, sb, out, recipe, bias, native=True)
    args = ScaledGemmArgs(a, b, sa, sb, out, recipe, bias)
    exact = reference(args, torch.float64)
    check_within(out, exact, error_bound(args, exact))


def test_configs_fit_the_block_recipe():
    for c in (*S.CUDA_CONFIGS, *S.HIP_CONFIGS, *S.INTERPRETER_CONFIGS, S.SAFE_CONFIG):
        assert 32 <= c.block_k <= 128 and 128 % c.block_k == 0, c


def test_dispatch_picks_the_triton_kernels():
    a, b, sa, sb = operands(torch.int8, "tensor", 3, 4, 5)
    assert hetero.explain("scaled_gemm", a, b, None, None, out_dtype=torch.int32,
                          backend="triton").chosen.qualname == "triton.tiled_int8"
    if FP8_HERE:
        a, b, sa, sb = operands(torch.float8_e4m3fn, "row", 3, 4, 5)
        assert hetero.explain("scaled_gemm", a, b, sa, sb,
                              backend="triton").chosen.qualname == "triton.tiled_fp8"
