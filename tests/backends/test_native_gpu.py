"""The native GPU kernels (backends/cuda/, python/hetero/backends/native_gpu.py) against
the float64 oracle: outputs poisoned first, awkward shapes (1, primes, several tiles,
partial tiles), transposed/strided/offset views, broadcast batches, bias and float32
output, causal with Sq != Sk, GQA, masks, NaN inputs.

Every test runs on each backend that can run here: ``cuda_emulated`` and
``rocm_emulated`` (the same kernel source on the CPU, by the host emulation: the
tensor-core and the SIMT path) everywhere, ``cuda``/``rocm`` on a GPU."""

from __future__ import annotations

import math
import shutil

import pytest
import torch

import hetero
from hetero.backends import native_gpu
from hetero.ops.gemm.checks import GEMM_LAYOUTS, gemm_operands
from hetero.ops.gemm.numerics import gemm_error_bound
from hetero.testing import check_within, flash_rule_bound, poison_, randn

DTYPES = [torch.float16, torch.bfloat16]
BACKENDS = {"cuda_emulated": "cpu", "rocm_emulated": "cpu", "cuda": "cuda", "rocm": "cuda"}


@pytest.fixture(params=list(BACKENDS))
def gpu(request):
    """``(backend name, torch device)`` for each GPU backend that runs here."""
    backend = getattr(native_gpu, request.param)
    reasons = backend.probe()
    if reasons:
        pytest.skip(f"{request.param}: {'; '.join(reasons)}")
    return request.param, torch.device(BACKENDS[request.param])


def _gemm_check(name, a, b, bias=None, alpha=1.0, beta=1.0, out_dtype=None):
    out = poison_(torch.empty(*a.shape[:-1], b.shape[-1], dtype=out_dtype or a.dtype,
                              device=a.device))
    hetero.gemm(a, b, bias=bias, alpha=alpha, beta=beta, out=out, backend=name)
    ref = torch.matmul(a.double(), b.double()) * alpha
    if bias is not None and beta != 0:
        ref = ref + beta * bias.double()
    bound = gemm_error_bound(a.cpu(), b.cpu(), None if bias is None else bias.cpu(), alpha, beta,
                             out_dtype=out.dtype)
    check_within(out.cpu(), ref.cpu(), bound)


# ------------------------------------------------------------------------ GEMM

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (1, 17, 5), (13, 7, 31), (129, 131, 67),
                                   (16, 256, 96), (300, 5, 33)])
def test_gemm_shapes(gpu, dtype, m, n, k):
    name, device = gpu
    a, b = randn(m, k, dtype=dtype, device=device, seed=1), randn(k, n, dtype=dtype, device=device, seed=2)
    _gemm_check(name, a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", GEMM_LAYOUTS)
def test_gemm_layouts(gpu, dtype, layout):
    """Each operand orientation (k-contiguous or not) and misaligned storage, which
    turns the 16-byte loads off."""
    name, device = gpu
    a, b = gemm_operands(layout, 133, 70, 45, dtype=dtype, device=device)
    _gemm_check(name, a, b)


@pytest.mark.parametrize("bias_dtype", [torch.float32, torch.bfloat16])
def test_gemm_batch_bias_and_float32_out(gpu, bias_dtype):
    """Broadcast batch dims (stride 0), a broadcast bias row, alpha/beta, float32 out."""
    name, device = gpu
    a = randn(3, 1, 37, 40, dtype=torch.bfloat16, device=device, seed=3).expand(3, 2, 37, 40)
    b = randn(2, 40, 19, dtype=torch.bfloat16, device=device, seed=4)
    bias = randn(19, dtype=bias_dtype, device=device, seed=5)
    _gemm_check(name, a, b, bias=bias.expand(3, 2, 37, 19), alpha=0.5, beta=-2.0)
    _gemm_check(name, a, b, bias=bias.expand(3, 2, 37, 19), out_dtype=torch.float32)


def test_gemm_beta_zero_ignores_bias_and_k_zero(gpu):
    name, device = gpu
    a, b = randn(9, 4, dtype=torch.float16, device=device), randn(4, 6, dtype=torch.float16, device=device)
    nan_bias = torch.full((9, 6), math.nan, dtype=torch.float16, device=device)
    out = hetero.gemm(a, b, bias=nan_bias, beta=0.0, backend=name)
    check_within(out.cpu(), (a.double() @ b.double()).cpu(),
                 gemm_error_bound(a.cpu(), b.cpu(), out_dtype=torch.float16))
    empty_k = hetero.gemm(a[:, :0], b[:0], bias=torch.ones(9, 6, dtype=torch.float16, device=device),
                          beta=3.0, backend=name)
    assert torch.equal(empty_k.cpu(), torch.full((9, 6), 3.0, dtype=torch.float16))
    assert hetero.gemm(a[:0], b, backend=name).shape == (0, 6)


def test_gemm_nan_propagates(gpu):
    name, device = gpu
    a, b = randn(20, 8, dtype=torch.float16, device=device), randn(8, 5, dtype=torch.float16, device=device)
    a[3, 2] = math.nan
    out = hetero.gemm(a, b, backend=name).cpu()
    assert out[3].isnan().all() and not out[torch.arange(20) != 3].isnan().any()


# ------------------------------------------------------------------- attention

def _attention_check(name, q, k, v, mask=None, causal=False):
    out = poison_(torch.empty(*q.shape[:3], v.shape[3], dtype=q.dtype, device=q.device))
    hetero.attention(q, k, v, causal=causal, attn_mask=mask, out=out, backend=name)
    kw = dict(causal=causal, attn_mask=None if mask is None else mask.cpu())
    qc, kc, vc = q.cpu(), k.cpu(), v.cpu()
    ref = hetero.reference_attention(qc, kc, vc, **kw)
    base = hetero.reference_attention(qc, kc, vc, compute_dtype=q.dtype, **kw)
    check_within(out.cpu(), ref, flash_rule_bound(ref, base))
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,Hq,Hkv,Sq,Sk,D,causal", [
    (1, 1, 1, 1, 1, 64, False),
    (2, 4, 2, 37, 53, 64, True),     # GQA, several key tiles, partial tiles
    (1, 2, 1, 70, 45, 128, True),    # Sq > Sk: the first rows see no key -> zeros
    (1, 3, 3, 1, 97, 128, True),     # decode: one query row, bottom-right causal
    (2, 2, 1, 130, 33, 64, False),   # several query tiles
])
def test_attention_shapes(gpu, dtype, B, Hq, Hkv, Sq, Sk, D, causal):
    name, device = gpu
    q = randn(B, Hq, Sq, D, dtype=dtype, device=device, seed=1)
    k = randn(B, Hkv, Sk, D, dtype=dtype, device=device, seed=2)
    v = randn(B, Hkv, Sk, D, dtype=dtype, device=device, seed=3)
    out = _attention_check(name, q, k, v, causal=causal)
    if causal and Sq > Sk:
        assert torch.equal(out[:, :, :Sq - Sk].cpu(), torch.zeros_like(out[:, :, :Sq - Sk].cpu()))


@pytest.mark.parametrize("kind", ["bool", "additive"])
def test_attention_masks(gpu, kind):
    name, device = gpu
    q = randn(2, 2, 19, 64, dtype=torch.float16, device=device, seed=4)
    k = randn(2, 2, 41, 64, dtype=torch.float16, device=device, seed=5)
    v = randn(2, 2, 41, 64, dtype=torch.float16, device=device, seed=6)
    gen = torch.Generator().manual_seed(7)
    if kind == "bool":
        mask = (torch.rand(2, 1, 19, 41, generator=gen) > 0.4).to(device)  # broadcast heads
    else:
        mask = torch.randn(19, 41, generator=gen).to(device)
    _attention_check(name, q, k, v, mask=mask, causal=True)


def test_attention_strided_views(gpu):
    """q/k/v as views into one packed (B, S, 3, H, D) projection, and a misaligned v."""
    name, device = gpu
    qkv = randn(2, 29, 3, 2, 128, dtype=torch.bfloat16, device=device, seed=8)
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
    _attention_check(name, q, k, v)
    storage = randn(2 * 2 * 29 * 128 + 1, dtype=torch.bfloat16, device=device, seed=9)
    v_misaligned = storage[1:].view(2, 2, 29, 128)
    _attention_check(name, q, k, v_misaligned, causal=True)


def test_attention_empty_keys_nan_and_empty_batch(gpu):
    name, device = gpu
    q = randn(1, 2, 5, 64, dtype=torch.float16, device=device)
    no_keys = torch.empty(1, 2, 0, 64, dtype=torch.float16, device=device)
    out = hetero.attention(q, no_keys, no_keys, backend=name)
    assert torch.equal(out.cpu(), torch.zeros(1, 2, 5, 64, dtype=torch.float16))
    k = randn(1, 2, 9, 64, dtype=torch.float16, device=device)
    q[0, 1, 3, 0] = math.nan
    out = hetero.attention(q, k, k, backend=name).cpu()
    assert out[0, 1, 3].isnan().all() and out[0, 0].isfinite().all()
    assert hetero.attention(q[:0], k[:0], k[:0], backend=name).shape == (0, 2, 5, 64)


# ---------------------------------------------------------- declared support

def _f16(*shape, device):
    return randn(*shape, dtype=torch.float16, device=device)


@pytest.mark.parametrize("call,reason", [
    (lambda d, n: hetero.gemm(randn(4, 4, device=d), randn(4, 4, device=d), backend=n),
     "dtype float32 not in"),
    (lambda d, n: hetero.attention(*(_f16(1, 1, 4, 80, device=d),) * 3, backend=n),
     "head dim 80 not a multiple of 64"),
    (lambda d, n: hetero.attention(_f16(1, 1, 4, 64, device=d), _f16(1, 1, 4, 64, device=d),
                                   _f16(1, 1, 4, 128, device=d), backend=n),
     "head_dim_v not supported"),
])
def test_unsupported_calls_are_refused_with_the_reason(gpu, call, reason):
    name, device = gpu
    with pytest.raises(hetero.errors.DispatchError, match=reason):
        call(device, name)


def test_launcher_rejects_what_dispatch_would_not_send():
    """The C++ launchers check again: bad views and dtypes raise, naming the argument."""
    from hetero import _C_gpu_host as module
    from hetero.backends.views import view

    a = randn(4, 4, dtype=torch.float16)
    with pytest.raises(TypeError, match="a: hetero's GPU GEMM takes float16 or bfloat16"):
        module.gemm(view(a.float()), view(a.float()), view(a.float()))
    with pytest.raises(ValueError, match="b: expected 4 rows|b: expected trailing sizes"):
        module.gemm(view(a), view(randn(5, 4, dtype=torch.float16)), view(a))
    with pytest.raises(TypeError, match="head dims 64 or 128"):
        q = randn(1, 1, 3, 32, dtype=torch.float16)
        module.attention_forward(view(q), view(q), view(q), None, False, 1.0, view(q))
    with pytest.raises(ValueError, match="path: expected 'tensor_cores' or 'simt'"):
        module.gemm(view(a), view(a), view(a), path="mfma")


# ------------------------------------------------------- build and discovery

def test_runtime_report_of_the_emulation():
    from hetero import _C_gpu_host as module

    report = module.runtime_report()
    assert report["platform"] == "host" and report["device_count"] == 1
    assert report["paths"] == ["tensor_cores", "simt"]


@pytest.mark.parametrize("name,module,tool", [("cuda", "_C_cuda", "nvcc"),
                                              ("rocm", "_C_rocm", "hipcc")])
def test_gpu_modules_built_where_their_compiler_is(name, module, tool):
    """CI installs nvcc and hipcc: there, both modules must have been compiled (a
    compile error fails the install); elsewhere the status says why not."""
    status = native_gpu.build_status(module)
    if shutil.which(tool):
        assert status.startswith("built"), status
    else:
        assert status.startswith("not built: "), status


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU report")
@pytest.mark.parametrize("name", ["cuda", "rocm"])
def test_without_a_gpu_the_backends_say_why(name):
    backend = getattr(native_gpu, name)
    reasons = backend.probe()
    assert reasons, f"{name} claims to be available on a machine without a GPU"
    text = " ".join(reasons)
    if native_gpu.build_status(backend.module_name).startswith("built"):
        assert "not a" in text and "build" in text  # torch without CUDA/ROCm
        assert "finds no device" in text
    assert name not in hetero.info()["default_order"].get("cpu", [])


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine whose runtime fails")
@pytest.mark.parametrize("module,runtime", [("_C_cuda", "CUDA"), ("_C_rocm", "HIP")])
def test_runtime_errors_become_python_exceptions(module, runtime):
    """Without a usable GPU the launch itself fails: the runtime's own message comes
    back as a RuntimeError (never a crash, never a silent no-op). The views are
    valid, so only the runtime can object."""
    if not native_gpu.build_status(module).startswith("built"):
        pytest.skip(f"hetero.{module} is not built here")
    import importlib

    from hetero.backends.views import view

    mod = importlib.import_module(f"hetero.{module}")
    report = mod.runtime_report()
    a = randn(8, 8, dtype=torch.float16)
    with pytest.raises(RuntimeError, match=f"{runtime} error launching gemm: ") as info:
        mod.gemm(view(a), view(a), view(a), path=report["paths"][0])
    message = str(info.value).split(": ", 1)[1]
    assert message and message != "no error"  # the runtime's string, e.g. hipErrorInvalidDevice
