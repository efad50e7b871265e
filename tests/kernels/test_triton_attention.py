"""The Triton flash-attention kernels (forward and backward) against the float64 oracle.

On a machine without a GPU they run under Triton's CPU interpreter (TRITON_INTERPRET=1,
slow: shapes stay small, bfloat16 is refused there); with a GPU the same tests run on
it, plus bfloat16 and larger shapes. Error bounds: FlashAttention's rule
(``flash_rule_bound``) against PyTorch doing the same computation in the input dtype;
gradients with factor 3, against float64 autograd through ``reference_attention``.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

GPU = torch.cuda.is_available()
if not GPU:  # before triton is imported (tests/conftest.py may have done it already)
    os.environ.setdefault("TRITON_INTERPRET", "1")

try:
    import triton  # noqa: F401
except ImportError:  # pragma: no cover - depends on the installation
    triton = None

import hetero
from hetero.ops.attention.checks import (attention_inputs, check_attention_backward,
    check_attention_forward, run_attention_forward)
from hetero.testing import check_within, flash_rule_bound, poison_, randn

pytestmark = pytest.mark.skipif(triton is None, reason="triton is not installed")

if triton is not None:
    from hetero.kernels.triton import attention as ta
    from hetero.kernels.triton import attention_configs, interpreting
    from hetero.kernels.triton.attention_backward import attention_backward

DEVICE = "cuda" if GPU else "cpu"
DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if GPU else [])
gpu_only = pytest.mark.skipif(not GPU, reason="needs a GPU (too slow for the interpreter)")


@pytest.fixture(autouse=True)
def _untuned(monkeypatch):
    """One configuration per kernel: autotuning every test's shape would take minutes
    on a GPU (and is skipped by the interpreter anyway)."""
    monkeypatch.setattr(attention_configs, "AUTOTUNE", False)


def make(B, Hq, Hkv, Sq, Sk, D, Dv, dtype, seed=0):
    return attention_inputs(B, Hq, Hkv, Sq, Sk, D, Dv, dtype=dtype, device=DEVICE, seed=seed)


def run_forward(q, k, v, mask=None, causal=False, scale=None, out=None):
    return run_attention_forward(ta.attention_forward, q, k, v, mask, causal, scale, out)


def check_forward(q, k, v, mask=None, causal=False, scale=None, out=None):
    return check_attention_forward(ta.attention_forward, q, k, v, mask, causal, scale, out)


def check_backward(q, k, v, mask=None, causal=False, scale=None, dout=None):
    return check_attention_backward(ta.attention_forward, attention_backward, q, k, v, mask,
                                    causal, scale, dout)


# ---------------------------------------------------------------------------------------
# Forward
# ---------------------------------------------------------------------------------------
SHAPES = [  # B, Hq, Hkv, Sq, Sk, D, Dv, causal
    (1, 1, 1, 1, 1, 16, 16, False),
    (1, 2, 2, 17, 17, 16, 16, True),
    (2, 2, 2, 5, 33, 16, 16, True),     # Sq < Sk: bottom-right causal
    (1, 2, 2, 33, 17, 24, 24, True),    # Sq > Sk: first rows see nothing; non-pow2 D
    (1, 4, 2, 17, 33, 16, 16, True),    # GQA
    (2, 4, 1, 33, 5, 80, 24, False),    # MQA, Dv != D, D = 80
    (1, 2, 1, 17, 33, 24, 48, False),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(map(str, s)))
def test_forward(shape, dtype):
    B, Hq, Hkv, Sq, Sk, D, Dv, causal = shape
    check_forward(*make(B, Hq, Hkv, Sq, Sk, D, Dv, dtype), causal=causal)


@pytest.mark.parametrize("causal", [False, True])
def test_bool_mask_broadcast_with_fully_masked_row(causal):
    q, k, v = make(2, 2, 1, 17, 17, 16, 16, torch.float32, seed=3)
    mask = torch.rand(1, 1, 17, 17, generator=torch.Generator().manual_seed(0)) > 0.4
    mask[..., 3, :] = False  # row 3 sees nothing
    mask = mask.to(DEVICE)
    out, lse = check_forward(q, k, v, mask=mask, causal=causal)  # mask strides (0, 0, 17, 1)
    assert (out[:, :, 3] == 0).all() and lse[:, :, 3].isinf().all()


@pytest.mark.parametrize("mask_dtype", [torch.float32, torch.float16])
def test_additive_mask_with_neg_inf(mask_dtype):
    q, k, v = make(1, 2, 2, 17, 33, 24, 16, torch.float16, seed=5)
    mask = randn(1, 2, 17, 33, dtype=torch.float32, seed=6)
    mask[0, 0, :, 4] = -math.inf      # one key hidden from every row of head 0
    mask[0, 1, 6] = -math.inf         # row 6 of head 1 sees nothing
    check_forward(q, k, v, mask=mask.to(DEVICE, mask_dtype), causal=True)


def test_strided_inputs_and_output():
    """q, k, v and out as (B, S, H, D) tensors viewed as (B, H, S, D)."""
    B, H, S, D = 2, 2, 17, 24
    q, k, v = (randn(B, S, H, D, device=DEVICE, seed=i).transpose(1, 2) for i in range(3))
    out = torch.empty(B, S, H, D, device=DEVICE).transpose(1, 2)
    check_forward(q, k, v, causal=True, out=out)
    k2 = randn(B, 2 * H, S, 2 * D, device=DEVICE, seed=9)[:, ::2, :, 1::2]  # odd strides
    check_forward(q, k2, v)


def test_negative_scale():
    check_forward(*make(1, 2, 2, 17, 33, 16, 16, torch.float32), scale=-0.3)


@pytest.mark.filterwarnings("ignore:All-NaN slice")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # numpy, in the interpreter
def test_nan_propagates():
    q, k, v = make(1, 1, 1, 17, 17, 16, 16, torch.float32)
    q[0, 0, 2, 5] = math.nan
    out, _ = run_forward(q, k, v)
    assert out[0, 0, 2].isnan().all()
    rest = [i for i in range(17) if i != 2]
    ref = hetero.reference_attention(q, k, v)
    check_within(out[:, :, rest], ref[:, :, rest], 1e-5)


@pytest.mark.parametrize("sizes", [(0, 2, 5, 7), (1, 2, 0, 7), (1, 2, 5, 0)],
                         ids=["B0", "Sq0", "Sk0"])
def test_empty(sizes):
    B, H, Sq, Sk = sizes
    q = randn(B, H, Sq, 16, device=DEVICE)
    k = randn(B, H, Sk, 16, device=DEVICE)
    v = randn(B, H, Sk, 16, device=DEVICE)
    out, lse = run_forward(q, k, v)
    assert out.shape == (B, H, Sq, 16) and lse.shape == (B, H, Sq)
    assert (out == 0).all() and lse.isinf().all()  # vacuous unless Sk == 0
    dout = randn(*out.shape, device=DEVICE)
    for g, t in zip(attention_backward(dout, q, k, v, out, lse, None, False, 0.25),
                    (q, k, v)):
        assert g.shape == t.shape and (g == 0).all()


def test_attention_writes_out_without_lse():
    q, k, v = make(1, 2, 2, 17, 17, 16, 16, torch.float32)
    out = poison_(torch.empty(1, 2, 17, 16, device=DEVICE))
    assert ta.attention(q, k, v, None, True, 0.25, out) is None
    ref = hetero.reference_attention(q, k, v, causal=True, scale=0.25)
    base = hetero.reference_attention(q, k, v, causal=True, scale=0.25,
                                      compute_dtype=torch.float32)
    check_within(out, ref, flash_rule_bound(ref, base))


@pytest.mark.skipif(GPU, reason="the interpreter refuses bfloat16")
def test_bfloat16_refused_by_interpreter():
    assert interpreting()
    q, k, v = make(1, 1, 1, 5, 5, 16, 16, torch.bfloat16)
    with pytest.raises(TypeError, match="bfloat16"):
        ta.attention(q, k, v, None, False, 0.25, torch.empty_like(q))


# ---------------------------------------------------------------------------------------
# Backward
# ---------------------------------------------------------------------------------------
BWD_SHAPES = [  # B, Hq, Hkv, Sq, Sk, D, Dv, causal
    (1, 4, 2, 17, 33, 16, 16, True),    # GQA, Sq < Sk
    (1, 2, 1, 33, 17, 24, 16, True),    # MQA, Sq > Sk: blind rows; non-pow2 D, Dv != D
    (2, 2, 2, 17, 17, 80, 80, False),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", BWD_SHAPES, ids=lambda s: "-".join(map(str, s)))
def test_backward(shape, dtype):
    B, Hq, Hkv, Sq, Sk, D, Dv, causal = shape
    check_backward(*make(B, Hq, Hkv, Sq, Sk, D, Dv, dtype), causal=causal)


def test_backward_bool_mask_fully_masked_row():
    q, k, v = make(1, 2, 2, 17, 17, 16, 16, torch.float32, seed=7)
    mask = torch.rand(1, 1, 17, 17, generator=torch.Generator().manual_seed(1)) > 0.3
    mask[..., 4, :] = False
    dq, _, _ = check_backward(q, k, v, mask=mask.to(DEVICE), causal=True)
    assert (dq[:, :, 4] == 0).all()


def test_backward_additive_mask_strided_dout():
    q, k, v = make(1, 2, 1, 17, 33, 16, 24, torch.float32, seed=8)
    mask = randn(1, 2, 17, 33, seed=12)
    mask[:, :, :, 7] = -math.inf
    dout = randn(1, 17, 2, 24, device=DEVICE, seed=13).transpose(1, 2)
    check_backward(q, k, v, mask=mask.to(DEVICE), causal=False, dout=dout)


# ---------------------------------------------------------------------------------------
# GPU only: sizes the interpreter cannot afford
# ---------------------------------------------------------------------------------------
@gpu_only
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("D", [64, 128, 256])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_gpu_large(dtype, D, causal):
    q, k, v = make(2, 4, 4, 1024, 1024, D, D, dtype)
    check_forward(q, k, v, causal=causal)
    check_backward(q[:1], k[:1], v[:1], causal=causal)


@gpu_only
@pytest.mark.parametrize("D", [96, 160, 192])
def test_gpu_non_pow2_gqa(D):
    q, k, v = make(1, 8, 2, 300, 517, D, D, torch.bfloat16)
    check_forward(q, k, v, causal=True)
    check_backward(q, k, v, causal=True)


@gpu_only
def test_gpu_float32_tf32():
    q, k, v = make(1, 2, 2, 256, 256, 64, 64, torch.float32)
    out = poison_(torch.empty_like(q))
    ta.attention(q, k, v, None, False, 0.125, out, allow_tf32=True)
    ref = hetero.reference_attention(q, k, v, scale=0.125)
    check_within(out, ref, 1e-2)  # tf32: 10-bit mantissa
