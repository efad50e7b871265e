"""The Triton backend: GEMM, flash attention and scaled (fp8/int8) GEMM from
``hetero/kernels/triton/``.

Serves CUDA and ROCm torch devices (both have device type ``"cuda"``). With
``TRITON_INTERPRET=1`` it serves CPU tensors instead, through Triton's interpreter —
slow, opt-in only, and without bfloat16, which the interpreter's ``tl.dot`` gets wrong.
Triton itself is imported on the first kernel call, not with hetero.

fp32 inputs: exact fp32 products unless ``torch.backends.cuda.matmul.allow_tf32`` is
set, the same switch PyTorch's own matmul obeys.

varlen_attention and paged_attention: one flash kernel walking packed rows or the block
table (``kernels/triton/serving_attention.py``).
scaled_gemm: two kernels. fp8 (all four encodings) on NVIDIA sm89+ (tensor-core fp8
dots for e4m3fn/e5m2, the FNUZ types decoded to float16 in the kernel) and on ROCm
(fp8 dots where the GPU has them, else decoded); int8 on sm80+ and ROCm, with int32
results for ``torch._int_mm`` calls.
"""

from __future__ import annotations

import importlib.util

import torch

from ..kernel import Kernel, Support
from ..kernels.triton import interpreting
from ..ops.attention.api import FEATURES as ATTENTION_FEATURES
from ..ops.attention.api import head_dims
from ..ops.gemm.api import FEATURES as GEMM_FEATURES
from ..ops.scaled_gemm.api import FEATURES as SCALED_GEMM_FEATURES
from ..ops.paged_attention.api import FEATURES as PAGED_FEATURES
from ..ops.scaled_gemm.api import FP8_DTYPES
from ..ops.varlen_attention.api import FEATURES as VARLEN_FEATURES
from .base import Backend

_DTYPES = frozenset({torch.float32, torch.float16, torch.bfloat16})


def _allow_tf32() -> bool:
    return torch.backends.cuda.matmul.allow_tf32


def _gemm(args):
    from ..kernels.triton.gemm import gemm

    gemm(args.a, args.b, args.bias, args.alpha, args.beta, args.out, allow_tf32=_allow_tf32())


def _attention(args):
    """The flash forward; stores ``args.lse`` when given (for the backward)."""
    from ..kernels.triton.attention import attention, attention_forward

    a = args
    if a.lse is None:
        attention(a.q, a.k, a.v, a.mask, a.causal, a.scale, a.out, allow_tf32=_allow_tf32())
    else:
        a.lse.copy_(attention_forward(a.q, a.k, a.v, a.mask, a.causal, a.scale, a.out,
                                      allow_tf32=_allow_tf32()))


def _attention_backward(args, dout):
    from ..kernels.triton.attention_backward import attention_backward

    a = args
    return attention_backward(dout, a.q, a.k, a.v, a.out, a.lse, a.mask, a.causal, a.scale,
                              allow_tf32=_allow_tf32())


def _scaled_gemm(args):
    from ..kernels.triton.scaled_gemm import scaled_gemm

    scaled_gemm(args.a, args.b, args.scale_a, args.scale_b, args.out, args.recipe, args.bias)


def _varlen_attention(args):
    from ..kernels.triton.serving_attention import varlen_attention
    varlen_attention(args.q, args.k, args.v, args.cu_seqlens_q, args.cu_seqlens_k, args.causal,
                     args.scale, args.window, args.softcap, args.out, args.lse)


def _paged_attention(args):
    from ..kernels.triton.serving_attention import paged_attention
    cu_q = args.cu_seqlens_q
    if cu_q is None:  # one query per sequence
        cu_q = torch.arange(args.q.shape[0] + 1, dtype=torch.int32, device=args.q.device)
    paged_attention(args.q, args.k_cache, args.v_cache, args.block_table, args.seq_lens, cu_q,
                    args.causal, args.scale, args.window, args.softcap, args.out)


def _interpreter_limits(traits):
    """bfloat16 refused under TRITON_INTERPRET (the interpreter's tl.dot multiplies
    raw bf16 bits)"""
    if interpreting() and traits.dtype is torch.bfloat16:
        return ["Triton's interpreter computes tl.dot wrongly for bfloat16 operands"]
    return []


class TritonBackend(Backend):
    name = "triton"
    api_version = "2.0"
    priority = 50

    def __init__(self):
        self.interpret = interpreting()
        self.device_type = "cpu" if self.interpret else "cuda"
        self.default = not self.interpret  # the interpreter is for testing, never a default
        self.description = ("Triton kernels on CPU tensors through the interpreter "
                            "(TRITON_INTERPRET=1)" if self.interpret else
                            "Triton kernels for CUDA and ROCm GPUs")

    def probe(self):
        if importlib.util.find_spec("triton") is None:
            return ["triton is not installed (pip install triton)"]
        if not self.interpret and not torch.cuda.is_available():
            return ["triton is installed, but no CUDA or ROCm device is present "
                    "(TRITON_INTERPRET=1 runs the kernels on the CPU, slowly)"]
        return []

    def kernels(self):
        devices = frozenset({self.device_type})
        return (
            Kernel("gemm", "tiled", _gemm, Support(
                dtypes=_DTYPES, device_types=devices, features=frozenset(GEMM_FEATURES),
                predicate=_interpreter_limits)),
            Kernel("attention", "flash", _attention, Support(
                dtypes=_DTYPES, device_types=devices,
                features=frozenset(ATTENTION_FEATURES), limits=head_dims(16, 256),
                predicate=_interpreter_limits),
                backward=_attention_backward),
            Kernel("varlen_attention", "flash", _varlen_attention, Support(
                dtypes=_DTYPES, device_types=devices, features=frozenset(VARLEN_FEATURES),
                limits=head_dims(16, 256), predicate=_interpreter_limits)),
            Kernel("paged_attention", "paged", _paged_attention, Support(
                dtypes=_DTYPES, device_types=devices, features=frozenset(PAGED_FEATURES),
                limits=head_dims(16, 256), predicate=_interpreter_limits)),
            Kernel("scaled_gemm", "tiled_fp8", _scaled_gemm, Support(
                dtypes=frozenset(FP8_DTYPES), device_types=devices,
                features=frozenset(SCALED_GEMM_FEATURES) - {"int32_out"},
                min_compute_capability=(8, 9))),
            Kernel("scaled_gemm", "tiled_int8", _scaled_gemm, Support(
                dtypes=frozenset({torch.int8}), device_types=devices,
                features=frozenset(SCALED_GEMM_FEATURES), min_compute_capability=(8, 0))),
        )


backend = TritonBackend()
