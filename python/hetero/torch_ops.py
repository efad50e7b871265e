"""hetero's ops as real torch operators, with fake impls and autograd::

    torch.ops.hetero.gemm(a, b, bias=None, alpha=1., beta=1.) -> out
    torch.ops.hetero.attention(q, k, v, attn_mask=None, causal=False, scale=None) -> out
    torch.ops.hetero.attention_forward(q, k, v, attn_mask, causal, scale) -> (out, lse)
    torch.ops.hetero.attention_backward(dout, q, k, v, out, lse, attn_mask, causal,
                                        scale) -> (dq, dk, dv)

Shapes, dtypes and semantics are those of :func:`hetero.gemm` and
:func:`hetero.attention`; ``lse (B, Hq, Sq)`` is float32 (float64 for float64 inputs),
see :class:`hetero.Kernel`'s ``training``. Because they are ``torch.library`` ops with
fake impls, ``torch.compile`` puts them in its graphs without a break, and
``torch.library.opcheck`` passes on them.

Each call goes through hetero's dispatcher (:func:`hetero.dispatch.resolve_bridge`):
the kernel it picks computes the call; when no hetero kernel can (the reference
backend serves only when asked for by name), PyTorch computes it — counted, with the
reason, in :func:`hetero.stats`, and warned about under the fallback policy.

Gradients: ``gemm``'s are two more ``hetero::gemm`` calls, so it differentiates any
number of times. ``attention``'s backward is ``hetero::attention_backward`` (the
kernel's ``training`` pair); it is not itself differentiable, and an additive mask gets
no gradient (one that requires grad is refused).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Optional

import torch
from torch import Tensor

from . import counters, dispatch
from .backends.reference import compute_dtype as _compute_dtype
from .ops import reference_gemm
from .ops.attention import _prepare as _prepare_attention
from .ops.attention import reference_attention_backward, reference_attention_forward
from .ops.gemm import _prepare as _prepare_gemm

_bridge_cache = dispatch._bridge_cache


@contextmanager
def _plain_torch():
    """Kernels and fallbacks run with torch function modes off (so ``hetero.enable``
    does not route hetero's own torch calls back to hetero) and without autograd."""
    with torch._C.DisableTorchFunction(), torch.no_grad():
        yield


# ---------------------------------------------------------------- gemm
@torch.library.custom_op("hetero::gemm", mutates_args=())
def gemm(a: Tensor, b: Tensor, bias: Optional[Tensor] = None, alpha: float = 1.0,
         beta: float = 1.0) -> Tensor:
    """``alpha * (a @ b) + beta * bias`` as :func:`hetero.gemm` computes it, returning a
    new ``(..., M, N)`` tensor of ``a``'s dtype."""
    with _plain_torch():
        key, args = _prepare_gemm(a, b, bias, alpha, beta, None, None)
        kernel, why = _bridge_cache.get(key) or dispatch.resolve_bridge(key)
        out = args[-1]
        flops = counters.gemm_flops(out.numel(), 1, a.shape[-1])
        if kernel is None:
            counters.record_fallback("gemm", why, flops)
            return reference_gemm(a, b, bias, alpha, beta, compute_dtype=a.dtype)
        kernel.fn(*args)
        counters.record("gemm", kernel.qualname, flops)
        return out


@gemm.register_fake
def _gemm_fake(a, b, bias=None, alpha=1.0, beta=1.0):
    if a.dim() < 2 or b.dim() < 2 or a.shape[-1] != b.shape[-2] or a.dtype != b.dtype:
        raise ValueError(f"b: shape {tuple(b.shape)} / dtype {b.dtype} do not fit a's "
                         f"{tuple(a.shape)} / {a.dtype} for a @ b")
    batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return a.new_empty((*batch, a.shape[-2], b.shape[-1]))


def _gemm_setup(ctx, inputs, output):
    a, b, bias, alpha, beta = inputs
    ctx.save_for_backward(a, b)
    ctx.alpha, ctx.beta = alpha, beta
    ctx.bias_shape = None if bias is None else bias.shape
    # needs_input_grad covers only the arguments passed, so ask the bias itself
    ctx.bias_needs_grad = bias is not None and bias.requires_grad and beta != 0


def _gemm_backward(ctx, grad):
    a, b = ctx.saved_tensors
    grad_a = grad_b = grad_bias = None
    if ctx.needs_input_grad[0]:  # dA = alpha dOut B^T, summed over broadcast batch dims
        grad_a = gemm(grad, b.mT, None, ctx.alpha, 1.0).sum_to_size(a.shape)
    if ctx.needs_input_grad[1]:
        grad_b = gemm(a.mT, grad, None, ctx.alpha, 1.0).sum_to_size(b.shape)
    if ctx.bias_needs_grad:
        grad_bias = (grad if ctx.beta == 1 else grad * ctx.beta).sum_to_size(ctx.bias_shape)
    return grad_a, grad_b, grad_bias, None, None


gemm.register_autograd(_gemm_backward, setup_context=_gemm_setup)


# ---------------------------------------------------------------- attention
def _attention_flops(q, k, v, causal) -> float:
    B, Hq, Sq, D = q.shape
    return counters.attention_flops(B * Hq, Sq, k.shape[2], D, v.shape[3], causal)


@torch.library.custom_op("hetero::attention_forward", mutates_args=())
def attention_forward(q: Tensor, k: Tensor, v: Tensor, attn_mask: Optional[Tensor] = None,
                      causal: bool = False,
                      scale: Optional[float] = None) -> tuple[Tensor, Tensor]:
    """:func:`hetero.attention` returning ``(out, lse)``: the output and each row's
    log-sum-exp, which :func:`attention_backward` takes."""
    with _plain_torch():
        key, args = _prepare_attention(q, k, v, causal, scale, attn_mask, None, None)
        q, k, v, mask, causal, scale, out = args
        kernel, why = _bridge_cache.get(key) or dispatch.resolve_bridge(key)
        flops = _attention_flops(q, k, v, causal)
        if kernel is None:
            counters.record_fallback("attention", why, flops)
            out, lse = reference_attention_forward(q, k, v, mask, causal, scale,
                                                   compute_dtype=_compute_dtype(q.dtype))
            return out.to(q.dtype), lse
        if kernel.training is not None:
            lse = kernel.training[0](*args)
        else:  # an inference-only kernel: the log-sum-exp comes from the oracle
            kernel.fn(*args)
            lse = reference_attention_forward(q, k, v, mask, causal, scale,
                                              compute_dtype=_compute_dtype(q.dtype))[1]
        counters.record("attention", kernel.qualname, flops)
        return out, lse


@attention_forward.register_fake
def _attention_forward_fake(q, k, v, attn_mask=None, causal=False, scale=None):
    B, Hq, Sq, _ = q.shape
    return (q.new_empty((B, Hq, Sq, v.shape[3])),
            q.new_empty((B, Hq, Sq), dtype=_compute_dtype(q.dtype)))


def _attention_setup(ctx, inputs, output):
    q, k, v, attn_mask, causal, scale = inputs
    if attn_mask is not None and attn_mask.requires_grad:
        raise ValueError("attn_mask: hetero's attention gives the mask no gradient; "
                         "pass it detached (or leave this call to PyTorch)")
    out, lse = output
    ctx.mark_non_differentiable(lse)
    ctx.save_for_backward(q, k, v, attn_mask, out, lse)
    ctx.causal = causal
    ctx.scale = 1.0 / math.sqrt(q.shape[3]) if scale is None else scale


def _attention_backward_rule(ctx, dout, _dlse):
    q, k, v, attn_mask, out, lse = ctx.saved_tensors
    dq, dk, dv = attention_backward(dout.contiguous(), q, k, v, out, lse, attn_mask,
                                    ctx.causal, ctx.scale)
    return dq, dk, dv, None, None, None


attention_forward.register_autograd(_attention_backward_rule, setup_context=_attention_setup)


@torch.library.custom_op("hetero::attention_backward", mutates_args=())
def attention_backward(dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor,
                       lse: Tensor, attn_mask: Optional[Tensor], causal: bool,
                       scale: float) -> tuple[Tensor, Tensor, Tensor]:
    """``(dq, dk, dv)`` of :func:`attention_forward` for the upstream gradient
    ``dout (B, Hq, Sq, Dv)``, from the forward's ``out`` and ``lse``."""
    with _plain_torch():
        key, args = _prepare_attention(q, k, v, causal, scale, attn_mask, None, None)
        q, k, v, mask, causal, scale, _ = args
        kernel, why = _bridge_cache.get(key) or dispatch.resolve_bridge(key)
        flops = counters.ATTENTION_BACKWARD_FACTOR * _attention_flops(q, k, v, causal)
        if kernel is None or kernel.training is None:
            reason = why or f"{kernel.qualname} has no backward (no training pair)"
            counters.record_fallback("attention_backward", reason, flops)
            grads = reference_attention_backward(dout, q, k, v, out, lse, mask, causal,
                                                 scale, compute_dtype=_compute_dtype(q.dtype))
        else:
            grads = kernel.training[1](dout, q, k, v, out, lse, mask, causal, scale)
            counters.record("attention_backward", kernel.qualname, flops)
        return tuple(g.to(t.dtype).contiguous() for g, t in zip(grads, (q, k, v)))


@attention_backward.register_fake
def _attention_backward_fake(dout, q, k, v, out, lse, attn_mask, causal, scale):
    return tuple(t.new_empty(t.shape) for t in (q, k, v))


torch.library.define(
    "hetero::attention",
    "(Tensor q, Tensor k, Tensor v, Tensor? attn_mask=None, bool causal=False, "
    "float? scale=None) -> Tensor")


@torch.library.impl("hetero::attention", "CompositeImplicitAutograd")
def attention(q, k, v, attn_mask=None, causal=False, scale=None):
    """:func:`hetero.attention` as a torch op: ``attention_forward``'s ``out``."""
    return attention_forward(q, k, v, attn_mask, causal, scale)[0]

