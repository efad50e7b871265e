"""Direct tests of the native module hetero._C (no dispatch layer in between).

Tensors are handed over as (data_ptr, dtype_code, sizes, strides) tuples, the
same format the Python backend uses. Outputs are poisoned with NaN first so a
skipped element can never pass by accident.
"""

import math

import pytest
import torch

from hetero import _C

CODES = {
    torch.float32: int(_C.DType.float32),
    torch.float16: int(_C.DType.float16),
    torch.bfloat16: int(_C.DType.bfloat16),
    torch.float64: int(_C.DType.float64),
}
LOW = [torch.float32, torch.float16, torch.bfloat16]
BITS = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}


def view(t):
    return (t.data_ptr(), CODES[t.dtype], tuple(t.shape), tuple(t.stride()))


def gemm(a, b, out, bias=None, alpha=1.0, beta=1.0):
    _C.gemm(view(a), view(b), view(out), None if bias is None else view(bias), alpha, beta)


def randn(*shape, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).to(dtype)


def nan_like(shape, dtype):
    return torch.full(shape, float("nan"), dtype=dtype)


def assert_close_to_reference(out, a, b, bias=None, alpha=1.0, beta=1.0):
    """Rigorous float32-accumulation error bound against a float64 reference."""
    K = a.shape[-1]
    ref = alpha * (a.double() @ b.double())
    mag = abs(alpha) * (a.double().abs() @ b.double().abs())
    if bias is not None and beta != 0:
        ref = ref + beta * bias.double()
        mag = mag + abs(beta) * bias.double().abs()
    fi = torch.finfo(out.dtype)
    bound = (K + 3) * 2.0**-24 * mag + fi.eps * ref.abs() + fi.tiny * fi.eps
    got = out.double()
    assert not got.isnan().any(), "output elements left unwritten (NaN poison) or NaN produced"
    err = (got - ref).abs()
    assert (err <= bound).all(), f"max err {err.max().item()} vs bound {bound.max().item()}"


def assert_bitwise_equal(got, want):
    assert got.dtype == want.dtype and got.shape == want.shape
    nan = want.isnan()
    assert torch.equal(got.isnan(), nan), "NaN positions differ"
    ib = BITS[want.dtype]
    assert torch.equal(got.view(ib)[~nan], want.view(ib)[~nan])


# ---------------------------------------------------------------- numerics

SHAPES = [(1, 1, 1), (7, 13, 5), (33, 17, 65), (0, 5, 3), (4, 0, 3), (4, 5, 0), (1, 31, 2), (64, 1, 7)]


@pytest.mark.parametrize("M,N,K", SHAPES)
@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("out_f32", [False, True])
def test_matches_float64_reference(M, N, K, dtype, out_f32):
    out_dtype = torch.float32 if out_f32 else dtype
    a = randn(M, K, dtype=dtype, seed=1)
    b = randn(K, N, dtype=dtype, seed=2)
    out = nan_like((M, N), out_dtype)
    gemm(a, b, out, None, 1.0, 0.0)
    assert_close_to_reference(out, a, b)


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("transpose_a,transpose_b", [(True, False), (False, True), (True, True)])
def test_transposed_views(dtype, transpose_a, transpose_b):
    M, N, K = 11, 19, 23
    a = randn(K, M, dtype=dtype, seed=3).t() if transpose_a else randn(M, K, dtype=dtype, seed=3)
    b = randn(N, K, dtype=dtype, seed=4).t() if transpose_b else randn(K, N, dtype=dtype, seed=4)
    if transpose_b:
        assert b.stride() == (1, K)
    out = nan_like((M, N), dtype)
    gemm(a, b, out, None, 1.0, 0.0)
    assert_close_to_reference(out, a, b)


def test_strided_output_writes_only_its_elements():
    M, N, K = 5, 6, 7
    a = randn(M, K, dtype=torch.float32, seed=5)
    b = randn(K, N, dtype=torch.float32, seed=6)
    storage = nan_like((2 * M, 3 * N), torch.float32)
    out = storage[::2, ::3]  # strides (6N, 3): holes around every element
    gemm(a, b, out, None, 1.0, 0.0)
    assert_close_to_reference(out, a, b)
    touched = torch.zeros_like(storage, dtype=torch.bool)
    touched[::2, ::3] = True
    assert storage[~touched].isnan().all()


@pytest.mark.parametrize("dtype", LOW)
def test_batch_with_stride_zero_broadcast(dtype):
    B, M, N, K = 3, 6, 9, 10
    a = randn(1, M, K, dtype=dtype, seed=7).expand(B, M, K)  # batch stride 0
    b = randn(B, K, N, dtype=dtype, seed=8)
    out = nan_like((B, M, N), dtype)
    gemm(a, b, out, None, 1.0, 0.0)
    assert a.stride()[0] == 0
    assert_close_to_reference(out, a, b)


def test_four_dim_batch_broadcast_and_transposed():
    M, N, K = 4, 5, 6
    a = randn(2, 1, M, K, dtype=torch.float32, seed=9).expand(2, 3, M, K)
    b = randn(1, 3, N, K, dtype=torch.float32, seed=10).transpose(-1, -2).expand(2, 3, K, N)
    out = nan_like((2, 3, M, N), torch.float32)
    gemm(a, b, out, None, 1.0, 0.0)
    assert_close_to_reference(out, a, b)


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("bias_f32", [False, True])
@pytest.mark.parametrize("out_f32", [False, True])
def test_bias_alpha_beta(dtype, bias_f32, out_f32):
    M, N, K = 9, 14, 17
    a = randn(2, M, K, dtype=dtype, seed=11)
    b = randn(2, K, N, dtype=dtype, seed=12)
    # Row-vector bias broadcast over batch and rows: strides (0, 0, 1).
    bias = randn(N, dtype=torch.float32 if bias_f32 else dtype, seed=13).expand(2, M, N)
    out = nan_like((2, M, N), torch.float32 if out_f32 else dtype)
    gemm(a, b, out, bias, 0.5, -1.5)
    assert_close_to_reference(out, a, b, bias, 0.5, -1.5)


def test_beta_zero_ignores_nan_bias():
    a = randn(3, 4, dtype=torch.float32, seed=14)
    b = randn(4, 5, dtype=torch.float32, seed=15)
    bias = nan_like((3, 5), torch.float32)
    out = nan_like((3, 5), torch.float32)
    gemm(a, b, out, bias, 1.0, 0.0)
    assert_close_to_reference(out, a, b)


@pytest.mark.parametrize("with_bias", [False, True])
def test_k_zero_gives_beta_bias_or_zero(with_bias):
    a = torch.empty(3, 0)
    b = torch.empty(0, 4)
    bias = randn(3, 4, dtype=torch.float32, seed=16) if with_bias else None
    out = nan_like((3, 4), torch.float32)
    gemm(a, b, out, bias, 2.0, 0.25)
    want = 0.25 * bias if with_bias else torch.zeros(3, 4)
    assert torch.equal(out, want)


def test_empty_operands_may_have_null_pointers():
    null = lambda shape: (0, CODES[torch.float32], shape, (shape[1], 1))  # noqa: E731
    b = torch.ones(3, 4)
    _C.gemm(null((0, 3)), view(b), null((0, 4)), None, 1.0, 0.0)
    out = nan_like((2, 4), torch.float32)
    _C.gemm(null((2, 0)), null((0, 4)), view(out), None, 1.0, 0.0)
    assert torch.equal(out, torch.zeros(2, 4))


# ------------------------------------------- bit-exact scalar conversions

def all_bit_patterns(dtype):
    return torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(dtype)


def special_floats():
    vals = [0.0, -0.0, 1.0, -1.0, 65504.0, 65519.99, 65520.0, 65536.0, 2.0**-14, 2.0**-24,
            2.0**-25, 3 * 2.0**-26, 2.0**-149, 3.0e38, float("inf"), float("-inf"), float("nan")]
    g = torch.Generator().manual_seed(17)
    return torch.cat([torch.tensor(vals), torch.randn(1000, generator=g) * 1e4])


def exact_products(a, b):
    """a @ b for K == 1 in float32, as the active kernel set forms it. bf16 pair
    dots (vdpbf16ps) add the product to a +0 accumulator, reading subnormal
    inputs as zero and flushing a subnormal sum to a zero of its sign; every
    other path keeps the exact product."""
    product = a.float() * b.float()
    if a.dtype == torch.bfloat16 and _C.cpu_bf16_pair_dot():
        def subnormal(x):
            return (x != 0) & (x.abs() < torch.finfo(torch.float32).tiny)

        product = torch.where(subnormal(a.float()) | subnormal(b.float()), 0.0, product) + 0.0
        product = torch.where(subnormal(product), product * 0.0, product)
    return product


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("out_f32", [False, True])
@pytest.mark.parametrize("alpha", [1.0, 1 / 3, 3.0])
def test_alpha_scaling_is_bit_exact(isa, dtype, out_f32, alpha):
    """K == 1, b == 1: out is exactly round(float(a) * float32(alpha)), as in torch."""
    out_dtype = torch.float32 if out_f32 else dtype
    a = (special_floats() if dtype == torch.float32 else all_bit_patterns(dtype)).reshape(-1, 1)
    b = torch.ones(1, 1, dtype=dtype)
    out = nan_like((a.shape[0], 1), out_dtype)
    gemm(a, b, out, None, alpha, 0.0)
    want = (exact_products(a, b) * torch.tensor(alpha, dtype=torch.float32)).to(out_dtype)
    assert_bitwise_equal(out, want)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_rounding_of_exact_products_is_bit_exact(isa, dtype):
    """Products of two 16-bit floats are exact in float32, so the only rounding
    is float -> 16 bit: this hits ties, subnormal results and overflow."""
    a = all_bit_patterns(dtype)[::16].reshape(-1, 1)
    picks = [1.0, -1.0, 0.5, 3.0, 1 / 3, 255.9, 300.0, 2.0**-10, 2.0**-13, 1.0009765625, 0.99951171875]
    b = torch.tensor(picks).to(dtype).reshape(1, -1)
    out = nan_like((a.shape[0], b.shape[1]), dtype)
    gemm(a, b, out, None, 1.0, 0.0)
    want = exact_products(a, b).to(dtype)
    if isa == "amx" and dtype == torch.bfloat16:
        # AMX flushes a product that underflows float32 to zero before adding
        # it, and the zero padding of the pair then makes it +0: a zero's sign
        # is the one difference allowed.
        out, want = out.masked_fill(out == 0, 0.0), want.masked_fill(want == 0, 0.0)
    assert_bitwise_equal(out, want)
    finite = want.isfinite() & (want != 0)
    assert finite.any() and want.isinf().any() and (want == 0).any()


def test_fp16_subnormal_results_are_exercised():
    a = torch.tensor([[2.0**-14], [3 * 2.0**-20], [2.0**-24], [-(2.0**-15)]], dtype=torch.float16)
    b = torch.ones(1, 1, dtype=torch.float16)
    out = nan_like((4, 1), torch.float16)
    gemm(a, b, out, None, 1 / 3, 0.0)
    want = (a.float() * torch.tensor(1 / 3, dtype=torch.float32)).half()
    assert_bitwise_equal(out, want)
    assert (want.abs() < 2.0**-14).all() and (want != 0).any()


# ------------------------------------------------------------------- errors

def operands(M=3, N=4, K=5, dtype=torch.float32):
    return torch.ones(M, K, dtype=dtype), torch.ones(K, N, dtype=dtype), nan_like((M, N), dtype)


@pytest.mark.parametrize(
    "bad_b",
    [
        torch.ones(5, 4),  # a tensor, not a tuple
        (1, 0, (5, 4)),  # three fields
        (16, 0, [5, 4], 4),  # strides not a tuple
        (16, 0, (5.0, 4), (4, 1)),  # float size
        (16, 0, (5, 4), (4,)),  # strides shorter than sizes
        (16, 0, (1,) * 9, (1,) * 9),  # more than 8 dims
        (-16, 0, (5, 4), (4, 1)),  # negative pointer
        (16, 11, (5, 4), (4, 1)),  # unknown dtype code
        (16, 0, (2**70, 4), (4, 1)),  # size beyond int64
    ],
)
def test_malformed_tuple_is_value_error_naming_the_argument(bad_b):
    a, _, out = operands()
    with pytest.raises(ValueError, match=r"^b: "):
        _C.gemm(view(a), bad_b, view(out), None, 1.0, 0.0)
    assert out.isnan().all()


def test_mismatched_shapes_are_value_errors():
    a, b, out = operands()
    cases = {
        "b": (a, torch.ones(6, 4), out, None),  # K mismatch
        "out": (a, b, nan_like((3, 5), torch.float32), None),
        "bias": (a, b, out, torch.ones(4, 3)),
    }
    for name, (x, y, o, c) in cases.items():
        with pytest.raises(ValueError, match=rf"^{name}: expected"):
            gemm(x, y, o, c, 1.0, 1.0)
    with pytest.raises(ValueError, match=r"^b: expected 3 dims"):
        gemm(torch.ones(2, 3, 5), b, nan_like((2, 3, 4), torch.float32))
    with pytest.raises(ValueError, match=r"^out: expected batch sizes"):
        gemm(torch.ones(2, 3, 5), torch.ones(2, 5, 4), nan_like((3, 3, 4), torch.float32))
    with pytest.raises(ValueError, match=r"^a: expected 2 to 8 dims"):
        _C.gemm((16, 0, (5,), (1,)), view(b), view(out), None, 1.0, 0.0)
    assert out.isnan().all()


def test_unsupported_dtypes_are_type_errors():
    a64, b64, out64 = operands(dtype=torch.float64)
    with pytest.raises(TypeError, match=r"^a: expected dtype"):
        gemm(a64, b64, out64)
    a, b, out = operands(dtype=torch.float16)
    with pytest.raises(TypeError, match=r"^b: expected dtype float16"):
        gemm(a, b.float(), out)
    with pytest.raises(TypeError, match=r"^out: expected dtype float16 or float32"):
        gemm(a, b, nan_like((3, 4), torch.bfloat16))
    with pytest.raises(TypeError, match=r"^bias: expected dtype"):
        gemm(a, b, out, torch.ones(3, 4, dtype=torch.float64))


def test_bad_views_are_rejected_without_touching_memory():
    a, b, out = operands()
    shape, strides = (3, 5), (5, 1)
    bad = {
        "null pointer": (0, 0, shape, strides),
        "negative stride": (a.data_ptr(), 0, shape, (-5, 1)),
        "negative size": (a.data_ptr(), 0, (-3, 5), strides),
        "misaligned": (a.data_ptr() + 1, 0, shape, strides),
        "index overflow": (a.data_ptr(), 0, shape, (2**62, 1)),
        "count overflow": (a.data_ptr(), 0, (2**40, 2**40), (0, 0)),
    }
    for why, a_view in bad.items():
        with pytest.raises(ValueError, match=r"^a: expected"):
            _C.gemm(a_view, view(b), view(out), None, 1.0, 0.0)
    assert out.isnan().all()


# ------------------------------------------------------------------ module

def test_module_surface():
    assert [int(_C.DType.float32), int(_C.DType.float16), int(_C.DType.bfloat16), int(_C.DType.float64)] == [0, 1, 2, 3]
    assert _C.MAX_DIMS == 8
    from hetero.backends.views import DTYPE_CODES  # what every native launcher is sent
    assert DTYPE_CODES == {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2,
                           torch.float64: 3, torch.bool: int(_C.DType.bool),
                           torch.float8_e4m3fn: 5, torch.float8_e5m2: 6,
                           torch.float8_e4m3fnuz: 7, torch.float8_e5m2fnuz: 8, torch.int8: 9,
                           torch.int32: 10}
    assert all(int(getattr(_C.DType, str(t).removeprefix("torch.").replace("bool", "bool")))
               == code for t, code in DTYPE_CODES.items())
    info = _C.build_info()
    assert {"compiler", "cxx_standard", "pybind11", "max_dims"} <= info.keys()
    assert info["cxx_standard"] >= 201703


def test_dtype_enum_members_are_accepted_as_codes():
    a, b, out = operands()
    f32 = _C.DType.float32
    _C.gemm(
        (a.data_ptr(), f32, a.shape, a.stride()),
        (b.data_ptr(), f32, b.shape, b.stride()),
        (out.data_ptr(), f32, out.shape, out.stride()),
    )
    assert torch.equal(out, torch.full((3, 4), 5.0))


def test_large_k_accumulates_in_float32():
    # 4096 * 1.0 is exact in float32 but not representable on a float16 accumulator path.
    K = 4097
    a = torch.ones(1, K, dtype=torch.float16)
    b = torch.ones(K, 1, dtype=torch.float16)
    out = nan_like((1, 1), torch.float32)
    gemm(a, b, out, None, 1.0, 0.0)
    assert out.item() == float(K) and not math.isnan(out.item())
