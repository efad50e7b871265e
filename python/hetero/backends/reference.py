"""The reference backend: plain torch ops on any device, every dtype and feature.

It is the last resort of every default order and the oracle the others are checked
against. It computes in float32 (float64 for float64 inputs) and rounds once.
"""

from __future__ import annotations

import torch

from ..kernel import ATTENTION_FEATURES, GEMM_FEATURES, Kernel, Support
from ..ops import reference_attention, reference_gemm
from ..ops.attention import reference_attention_backward, reference_attention_forward
from .base import Backend

_ALL_DTYPES = frozenset({torch.float32, torch.float16, torch.bfloat16, torch.float64})


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """What the oracle computes ``dtype`` inputs in: float64 for float64, else float32."""
    return torch.float64 if dtype is torch.float64 else torch.float32


def _gemm(a, b, bias, alpha, beta, out):
    out.copy_(reference_gemm(a, b, bias, alpha, beta, compute_dtype=compute_dtype(a.dtype)))


def _attention(q, k, v, mask, causal, scale, out):
    out.copy_(reference_attention(q, k, v, causal=causal, scale=scale, attn_mask=mask,
                                  compute_dtype=compute_dtype(q.dtype)))


def _attention_forward(q, k, v, mask, causal, scale, out):
    result, lse = reference_attention_forward(q, k, v, mask, causal, scale,
                                              compute_dtype=compute_dtype(q.dtype))
    out.copy_(result)
    return lse  # float32, float64 for float64 inputs


def _attention_backward(dout, q, k, v, out, lse, mask, causal, scale):
    grads = reference_attention_backward(dout, q, k, v, out, lse, mask, causal, scale,
                                         compute_dtype=compute_dtype(q.dtype))
    return tuple(g.to(t.dtype) for g, t in zip(grads, (q, k, v)))


class ReferenceBackend(Backend):
    name = "reference"
    api_version = "1.0"
    device_type = "any"
    priority = -1000
    description = "plain torch ops in float32/float64; the oracle and last resort"

    def kernels(self):
        return (
            Kernel("gemm", "torch", _gemm,
                   Support(dtypes=_ALL_DTYPES, features=frozenset(GEMM_FEATURES))),
            Kernel("attention", "torch", _attention,
                   Support(dtypes=_ALL_DTYPES, features=frozenset(ATTENTION_FEATURES)),
                   training=(_attention_forward, _attention_backward)),
        )


backend = ReferenceBackend()
