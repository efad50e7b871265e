"""The Triton GEMM kernel (``hetero/kernels/triton/gemm.py``) called directly, checked
against the float64 oracle on random data with NaN-poisoned outputs.

Without a GPU it runs under Triton's CPU interpreter (``TRITON_INTERPRET=1``, set by
tests/conftest.py) on small shapes; bfloat16 is refused there. With a GPU the same tests
run on it, plus bfloat16, tf32, larger shapes, every tuning config and the autotuner.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

import hetero
from hetero.kernels.triton import interpreting
from hetero.ops.gemm.checks import GEMM_LAYOUTS, gemm_operands
from hetero.ops.gemm.numerics import gemm_error_bound
from hetero.testing import check_within, poison_, randn

HAVE_TRITON = importlib.util.find_spec("triton") is not None
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
GPU = DEVICE == "cuda"
pytestmark = [
    pytest.mark.skipif(not HAVE_TRITON, reason="triton is not installed"),
    pytest.mark.skipif(not GPU and not interpreting(),
                       reason="no GPU and TRITON_INTERPRET is not set"),
]
if HAVE_TRITON:
    from hetero.kernels.triton import gemm as G
    from hetero.kernels.triton import gemm_configs as C
    from hetero.kernels.triton import gemm_plan as P
    from hetero.kernels.triton import launch as L

F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16
DTYPES = [F32, F16] + ([BF16] if GPU else [])
LOW = [F16] + ([BF16] if GPU else [])
HOPPER = GPU and torch.version.hip is None and torch.cuda.get_device_capability() >= (9, 0)
TMA_HERE = not GPU or HOPPER  # the interpreter emulates TMA descriptors


def rand(*shape, dtype=F32, seed=0):
    return randn(*shape, dtype=dtype, device=DEVICE, seed=seed)


def run(a, b, bias=None, alpha=1.0, beta=1.0, *, out=None, out_dtype=None, **kw):
    """Broadcast as ``hetero.gemm`` does, poison ``out``, launch, check against float64."""
    batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    (m, k), n = a.shape[-2:], b.shape[-1]
    shape = (*batch, m, n)
    if out is None:
        out = torch.empty(shape, dtype=out_dtype or a.dtype, device=a.device)
    poison_(out)
    G.gemm(a.expand(*batch, m, k), b.expand(*batch, k, n),
           None if bias is None else bias.expand(shape), alpha, beta, out, **kw)
    ref = hetero.reference_gemm(a, b, bias, alpha, beta)
    check_within(out, ref, gemm_error_bound(a, b, bias, alpha, beta, out_dtype=out.dtype))
    return out


# -- shapes, views, batches ------------------------------------------------------------

SHAPES = [(1, 1, 1), (1, 7, 16), (7, 1, 17), (16, 16, 16), (17, 33, 7), (33, 17, 65),
          (65, 16, 33), (16, 65, 1), (5, 3, 257), (65, 65, 65)]  # (M, N, K)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("m, n, k", SHAPES)
def test_shapes(dtype, m, n, k):
    run(rand(m, k, dtype=dtype, seed=m), rand(k, n, dtype=dtype, seed=n))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", GEMM_LAYOUTS)
def test_views_are_read_through_their_strides(dtype, layout):
    run(*gemm_operands(layout, 19, 11, 29, dtype=dtype, device=DEVICE))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_batch_broadcast_and_dims_that_cannot_merge(dtype):
    a = rand(3, 1, 9, 14, dtype=dtype, seed=1)  # batch (3, 4): a broadcast on dim 1,
    b = rand(4, 14, 6, dtype=dtype, seed=2)  # b on dim 0: no single batch stride
    operands = [a.expand(3, 4, 9, 14), b.expand(3, 4, 14, 6), torch.empty(3, 4, 9, 6)]
    assert len(P.batch_dims((3, 4), operands)) == 2  # a loop over 3 launches of 4
    run(a, b, rand(6, dtype=dtype, seed=3), 0.5, -2.0)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_batch_dims_that_merge_and_a_shared_weight(dtype):
    a = rand(2, 3, 9, 16, dtype=dtype, seed=1)
    w = rand(5, 16, dtype=dtype, seed=2)
    operands = [a, w.t().expand(2, 3, 16, 5), torch.empty(2, 3, 9, 5)]
    dims = P.batch_dims((2, 3), operands)
    assert [size for size, _ in dims] == [6]  # one launch
    views = [P.batched_view(t, dims, i) for i, t in enumerate(operands)]
    folded = P.fold_batch_into_m(views[0], views[1], None, views[2])
    assert folded is not None and folded[0].shape == (1, 54, 16)  # x @ w: one GEMM
    run(a, w.t())
    run(a, rand(2, 3, 16, 5, dtype=dtype, seed=3))  # per-element b: a real batch
    run(a.transpose(0, 1), w.t())  # batch strides that do not continue the rows


# -- bias, alpha, beta, outputs ----------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("bias_shape", [(11,), (19, 1), (19, 11), (1,)])
def test_bias_alpha_beta(dtype, bias_shape):
    a, b = rand(19, 23, dtype=dtype, seed=1), rand(23, 11, dtype=dtype, seed=2)
    run(a, b, rand(*bias_shape, dtype=dtype, seed=3), alpha=0.5, beta=-2.0)


@pytest.mark.parametrize("dtype", LOW, ids=str)
def test_float32_bias_and_out_with_low_precision_inputs(dtype):
    a, b = rand(21, 37, dtype=dtype, seed=1), rand(37, 10, dtype=dtype, seed=2)
    run(a, b, rand(21, 1, seed=3), alpha=1.5, beta=0.25, out_dtype=F32)


def test_beta_zero_ignores_a_nan_bias_and_nan_inputs_propagate():
    a, b = rand(4, 5, seed=1), rand(5, 6, seed=2)
    out = poison_(torch.empty(4, 6, device=DEVICE))
    G.gemm(a, b, torch.full((4, 6), float("nan"), device=DEVICE), 1.0, 0.0, out)
    check_within(out, hetero.reference_gemm(a, b), gemm_error_bound(a, b, out_dtype=F32))
    a[2, 3] = float("nan")
    G.gemm(a, b, None, 1.0, 1.0, poison_(out))
    assert torch.isnan(out[2]).all() and not torch.isnan(out[[0, 1, 3]]).any()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_strided_out_is_written_through_its_strides_and_nothing_else(dtype):
    a, b = rand(2, 9, 14, dtype=dtype, seed=1), rand(2, 14, 6, dtype=dtype, seed=2)
    storage = poison_(torch.empty(2, 9, 13, dtype=dtype, device=DEVICE))
    out = storage[:, :, 1::2]  # every other column, from an offset
    run(a, b, rand(6, dtype=dtype, seed=3), 2.0, 0.5, out=out)
    assert torch.isnan(storage[:, :, 0::2]).all()
    out_t = torch.empty(2, 6, 9, dtype=dtype, device=DEVICE).transpose(1, 2)  # column-major
    run(a, b, out=out_t)


def test_empty_problems_return_and_k_zero_writes_beta_bias_or_zeros():
    for m, n, batch in ((0, 5, 2), (4, 0, 2), (4, 5, 0)):
        a, b = rand(batch, m, 3), rand(batch, 3, n)
        out = torch.empty(batch, m, n, device=DEVICE)
        G.gemm(a, b, None, 1.0, 1.0, out)
    a, b = rand(2, 4, 0), rand(2, 0, 5)
    bias = rand(5, seed=7)
    out = poison_(torch.empty(2, 4, 5, device=DEVICE))
    G.gemm(a, b, bias.expand(2, 4, 5), 1.0, -3.0, out)
    assert torch.equal(out, (-3.0 * bias).expand(2, 4, 5))
    G.gemm(a, b, None, 1.0, 1.0, poison_(out))
    assert torch.equal(out, torch.zeros_like(out))


# -- numerics of the input dtypes --------------------------------------------------------

def test_float32_products_are_exact_unless_tf32_is_allowed():
    # 1 + 2**-20 is a float32 but not a tf32 (10 mantissa bits): exact products keep it.
    a = torch.full((16, 16), 1 + 2**-20, device=DEVICE)
    b = torch.eye(16, device=DEVICE)
    out = poison_(torch.empty(16, 16, device=DEVICE))
    G.gemm(a, b, None, 1.0, 1.0, out)
    assert torch.equal(out, a)
    if GPU and torch.version.hip is None:
        G.gemm(a, b, None, 1.0, 1.0, poison_(out), allow_tf32=True)
        assert not torch.isnan(out).any() and not torch.equal(out, a)  # tf32 in effect


@pytest.mark.skipif(not GPU, reason="TF32 needs a GPU")
def test_tf32_within_a_tf32_bound():
    a, b = rand(257, 1031, seed=1), rand(1031, 511, seed=2)
    out = poison_(torch.empty(257, 511, device=DEVICE))
    G.gemm(a, b, None, 1.0, 1.0, out, allow_tf32=True,
           config=C.TileConfig(64, 128, 64, 8, 4, 3))
    ref = hetero.reference_gemm(a, b)
    magnitude = torch.matmul(a.double().abs(), b.double().abs())
    # Each input rounded to tf32 (relative 2**-11) before exact products, fp32 sums.
    bound = 2 * 2.0**-11 * magnitude + gemm_error_bound(a, b, out_dtype=F32)
    check_within(out, ref, bound)


@pytest.mark.skipif(GPU, reason="interpreter only")
def test_bfloat16_is_refused_under_the_interpreter():
    a = torch.ones(4, 4, dtype=BF16)
    with pytest.raises(TypeError, match="bfloat16 is not supported under TRITON_INTERPRET"):
        G.gemm(a, a, None, 1.0, 1.0, torch.empty(4, 4, dtype=BF16))


# -- load paths: TMA descriptors, persistent tiles, 64-bit offsets -----------------------

@pytest.mark.skipif(not TMA_HERE, reason="TMA needs an sm90+ NVIDIA GPU")
@pytest.mark.parametrize("persistent", [False, True], ids=["tiles", "persistent"])
@pytest.mark.parametrize("a_layout, b_layout", [("K", "N"), ("K", "K"), ("M", "N"),
                                                ("M", "K")])
def test_tma_descriptors_for_every_operand_majorness(a_layout, b_layout, persistent):
    m, n, k = 40, 24, 56  # rows 16-byte aligned, tiles ragged on every edge
    a = rand(2, m, k, dtype=F16, seed=1) if a_layout == "K" else \
        rand(2, k, m, dtype=F16, seed=1).transpose(1, 2)
    b = rand(2, k, n, dtype=F16, seed=2) if b_layout == "N" else \
        rand(2, n, k, dtype=F16, seed=2).transpose(1, 2)
    cfg = (C.TileConfig(32, 16, 16, 2, 4, 3, tma=True, persistent=persistent) if not GPU
           else C.TileConfig(64, 128, 64, 8, 4, 3, tma=True, persistent=persistent))
    run(a, b, rand(n, dtype=F16, seed=3), 0.5, 2.0, config=cfg)
    run(a, b, tma=True)


def test_tma_refuses_what_it_cannot_load():
    a = rand(9, 13, dtype=F16)  # 26-byte rows: not a multiple of 16
    out = torch.empty(9, 13, dtype=F16, device=DEVICE)
    with pytest.raises(ValueError, match="TMA cannot load"):
        G.gemm(a, rand(13, 13, dtype=F16), None, 1.0, 1.0, out, tma=True)


@pytest.mark.parametrize("dtype", [F32, F16], ids=str)
def test_persistent_programs_loop_over_tiles_and_batches(dtype):
    cfg = C.TileConfig(16, 16, 16, 2, 4, 3, persistent=True)
    run(rand(3, 33, 20, dtype=dtype, seed=1), rand(3, 20, 40, dtype=dtype, seed=2),
        rand(3, 33, 40, dtype=dtype, seed=3), -1.0, 0.5, config=cfg)


def test_64_bit_offsets(monkeypatch):
    monkeypatch.setattr(P, "_INT32_LIMIT", 0)  # every offset counts as large
    a, b = rand(2, 17, 40, dtype=F16, seed=1), rand(2, 24, 40, dtype=F16, seed=2)
    run(a, b.transpose(1, 2), rand(17, 1, dtype=F16, seed=3), 2.0, 1.0)
    if TMA_HERE:
        run(a, b.transpose(1, 2), tma=True)


# -- configs -------------------------------------------------------------------------------

@pytest.mark.parametrize("platform", ["cuda", "hip"])
def test_configs_for_is_never_empty_and_respects_the_problem(platform):
    table = C.HIP_CONFIGS if platform == "hip" else C.CUDA_CONFIGS
    for dtype in (F32, F16, BF16):
        for m, n, k in [(1, 1, 1), (16, 4096, 4096), (128, 11008, 4096), (4096, 4096, 4096),
                        (7, 5, 100000), (100000, 3, 8)]:
            for tma in (False, True):
                chosen = C.configs_for(m, n, k, dtype, platform=platform, tma=tma,
                                       max_shared_mem=101376, num_sms=132)
                assert chosen and all(c in table for c in chosen)
                assert tma or not any(c.tma for c in chosen)
    decode = C.configs_for(16, 4096, 4096, BF16, tma=True, max_shared_mem=232448,
                           num_sms=132)
    assert {c.block_m for c in decode} == {16}
    exact = C.configs_for(512, 512, 512, F32, exact_fp32=True)
    assert all(c.block_k <= 32 and not c.tma for c in exact)
    assert all(c.num_stages == 2 for c in C.HIP_CONFIGS)


# -- GPU only: larger shapes, every config, the autotuner --------------------------------

@pytest.mark.skipif(not GPU, reason="large shapes need a GPU")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gpu_large_odd_shapes_with_a_fixed_config(dtype):
    a, w = rand(257, 1031, dtype=dtype, seed=1), rand(511, 1031, dtype=dtype, seed=2)
    cfg = C.TileConfig(64, 64, 32, 8, 4, 3)
    run(a, w.t(), rand(511, dtype=dtype, seed=3), 0.5, 1.0, config=cfg)
    run(a, rand(1031, 511, dtype=dtype, seed=4), config=cfg)


def _config_id(c):
    return (f"{c.block_m}x{c.block_n}x{c.block_k}-w{c.num_warps}-s{c.num_stages}"
            + ("-tma" if c.tma else "") + ("-persistent" if c.persistent else ""))


def _configs():
    if not HAVE_TRITON:
        return []
    if GPU:
        return C.HIP_CONFIGS if torch.version.hip else C.CUDA_CONFIGS
    # The interpreter checks the tilings of both tables (warps, stages and compile
    # options mean nothing to it).
    tilings = {tuple(c.meta().items()): c for c in C.CUDA_CONFIGS + C.HIP_CONFIGS}
    return list(tilings.values())


_CONFIGS = _configs()


@pytest.mark.parametrize("cfg", _CONFIGS, ids=_config_id)
def test_every_config_is_correct(cfg):
    if GPU:
        if cfg.tma and not HOPPER:
            pytest.skip("TMA needs sm90+")
        smem, _, _ = L.device_limits(torch.cuda.current_device())
        if smem and cfg.num_stages * (cfg.block_m + cfg.block_n) * cfg.block_k * 2 > smem:
            pytest.skip("does not fit in this GPU's shared memory")
        # x @ w.t() as in test_gpu_autotuned and the benchmark (same specialisations:
        # what compiles here is reused there). Ragged edges on the GPU are covered by
        # the other tests; here, by the interpreter.
        a, w = rand(1024, 4096, dtype=BF16, seed=1), rand(1024, 4096, dtype=BF16, seed=2)
        run(a, w.t(), config=cfg)
    else:  # every edge ragged
        a, w = rand(40, 72, dtype=F16, seed=1), rand(72, 72, dtype=F16, seed=2)
        run(a, w.t(), rand(72, dtype=F16, seed=3), 1.0, 1.0, config=cfg)


@pytest.mark.skipif(not GPU, reason="autotuning needs a GPU")
@pytest.mark.parametrize("m, n, k", [(1024, 1024, 4096), (16, 4096, 4096)])
def test_gpu_autotuned_x_at_w_t(m, n, k, recwarn):
    a, w = rand(m, k, dtype=BF16, seed=1), rand(n, k, dtype=BF16, seed=2)
    run(a, w.t())
    # A config that fails while tuning is skipped, and if all fail SAFE_CONFIG runs:
    # never fatal, but on a healthy GPU neither should happen.
    failed = [str(w.message) for w in recwarn if "hetero triton gemm" in str(w.message)]
    assert not failed, failed
