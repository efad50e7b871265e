"""hetero's attention as torch operators, with fake impls and autograd (see
:mod:`hetero.torch_ops`)::

    torch.ops.hetero.attention(q, k, v, attn_mask=None, causal=False, scale=None) -> out
    torch.ops.hetero.attention_forward(q, k, v, attn_mask, causal, scale) -> (out, lse)
    torch.ops.hetero.attention_backward(dout, q, k, v, out, lse, attn_mask, causal,
                                        scale) -> (dq, dk, dv)

``lse (B, Hq, Sq)`` is float32 (float64 for float64 inputs), as
:class:`~.api.AttentionArgs` describes. The backward is the chosen kernel's ``backward``
(the reference's when the kernel has none); it is not itself differentiable, and an
additive mask gets no gradient (one that requires grad is refused). On CPU tensors, the
forward's calls dispatch gives ``cpu.flash`` run on a native entry
(:func:`hetero.native_entries.attention_op_entry`), counted natively.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from ... import counters, dispatch
from ...routing import BridgeOp
from ...torch_ops import decide, plain_torch
from .._checks import STAND_IN, compute_dtype
from .api import prepare
from .numerics import BACKWARD_FLOPS_FACTOR, flops, reference_attention_forward, reference_backward


@torch.library.custom_op("hetero::attention_forward", mutates_args=())
def attention_forward(q: Tensor, k: Tensor, v: Tensor, attn_mask: Optional[Tensor] = None,
                      causal: bool = False,
                      scale: Optional[float] = None) -> tuple[Tensor, Tensor]:
    """:func:`hetero.attention` returning ``(out, lse)``: the output and each row's
    log-sum-exp, which :func:`attention_backward` takes."""
    return _serve(q, k, v, attn_mask, causal, scale)


#: ``hetero_route::attention_op``, or ``None`` where the native route cannot run (set at
#: import by :mod:`hetero`).
native_attention_op = None
_observers = counters.observers


def _cpu_attention_forward(q, k, v, attn_mask=None, causal=False, scale=None):
    """The CPU kernel: calls dispatch gives ``cpu.flash`` natively, unless something
    observes hetero's counters (an audit); the rest as any device's. Registered as a
    plain kernel, without the checks ``custom_op`` wraps its kernels in (whether a result
    aliases an input: neither does)."""
    if native_attention_op is not None and not _observers:
        out, lse = native_attention_op(q, k, v, causal, scale, attn_mask)
        if out is not None:
            return out, lse
    return _serve(q, k, v, attn_mask, causal, scale)


_library = torch.library.Library("hetero", "IMPL")
_library.impl("attention_forward", _cpu_attention_forward, "CPU")


def _serve(q, k, v, attn_mask, causal, scale) -> tuple[Tensor, Tensor]:
    with plain_torch():
        key, args = prepare(q, k, v, causal, scale, attn_mask, None, None)
        kernel, why = decide(key, args)
        work = flops(args)
        if kernel is None:
            counters.record_fallback("attention", why, work)
            out, lse = reference_attention_forward(args.q, args.k, args.v, args.mask,
                                                   args.causal, args.scale,
                                                   compute_dtype=compute_dtype(q.dtype))
            return out.to(q.dtype), lse
        if kernel.backward is not None:  # it fills the log-sum-exp its backward needs
            lse = torch.empty(q.shape[:3], dtype=compute_dtype(q.dtype), device=q.device)
            kernel.fn(args._replace(lse=lse))
        else:  # an inference-only kernel: the log-sum-exp comes from the oracle
            kernel.fn(args)
            lse = reference_attention_forward(args.q, args.k, args.v, args.mask, args.causal,
                                              args.scale, compute_dtype=compute_dtype(q.dtype))[1]
        counters.record("attention", kernel.qualname, work, args)
        return args.out, lse


@attention_forward.register_fake
def _attention_forward_fake(q, k, v, attn_mask=None, causal=False, scale=None):
    B, Hq, Sq, _ = q.shape
    return (q.new_empty((B, Hq, Sq, v.shape[3])),
            q.new_empty((B, Hq, Sq), dtype=compute_dtype(q.dtype)))


def _setup(ctx, inputs, output):
    q, k, v, attn_mask, causal, scale = inputs
    if attn_mask is not None and attn_mask.requires_grad:
        raise ValueError("attn_mask: hetero's attention gives the mask no gradient; "
                         "pass it detached (or leave this call to PyTorch)")
    out, lse = output
    ctx.mark_non_differentiable(lse)
    ctx.save_for_backward(q, k, v, attn_mask, out, lse)
    ctx.causal = causal
    ctx.scale = 1.0 / math.sqrt(q.shape[3]) if scale is None else scale


def _backward_rule(ctx, dout, _dlse):
    q, k, v, attn_mask, out, lse = ctx.saved_tensors
    dq, dk, dv = attention_backward(dout.contiguous(), q, k, v, out, lse, attn_mask,
                                    ctx.causal, ctx.scale)
    return dq, dk, dv, None, None, None


attention_forward.register_autograd(_backward_rule, setup_context=_setup)


@torch.library.custom_op("hetero::attention_backward", mutates_args=())
def attention_backward(dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor,
                       lse: Tensor, attn_mask: Optional[Tensor], causal: bool,
                       scale: float) -> tuple[Tensor, Tensor, Tensor]:
    """``(dq, dk, dv)`` of :func:`attention_forward` for the upstream gradient
    ``dout (B, Hq, Sq, Dv)``, from the forward's ``out`` and ``lse``."""
    # Decided as the forward of a training step was (dispatch.training), so that the
    # kernel measured fastest at forward and backward together runs both.
    with plain_torch(), dispatch.training():
        key, args = prepare(q, k, v, causal, scale, attn_mask, None, None)
        args = args._replace(out=out, lse=lse)  # the forward's, as the backward reads them
        kernel, why = decide(key, args)
        work = BACKWARD_FLOPS_FACTOR * flops(args)
        if kernel is None or kernel.backward is None:
            reason = why if kernel is None else f"{kernel.qualname} has no backward kernel"
            counters.record_fallback("attention_backward", reason, work)
            grads = reference_backward(args, dout)
        else:
            grads = kernel.backward(args, dout)
            counters.record("attention_backward", kernel.qualname, work)
        return tuple(_in_layout_of(g.to(t.dtype), t) for g, t in zip(grads, (q, k, v)))


def _in_layout_of(grad: Tensor, t: Tensor) -> Tensor:
    """``grad`` laid out as ``t`` is (so a gradient of a transposed view flows back
    without a copy), as the fake impl says."""
    laid_out = torch.empty_like(t)
    return grad if grad.stride() == laid_out.stride() else laid_out.copy_(grad)


@attention_backward.register_fake
def _attention_backward_fake(dout, q, k, v, out, lse, attn_mask, causal, scale):
    return tuple(torch.empty_like(t) for t in (q, k, v))


torch.library.define(
    "hetero::attention",
    "(Tensor q, Tensor k, Tensor v, Tensor? attn_mask=None, bool causal=False, "
    "float? scale=None) -> Tensor")


@torch.library.impl("hetero::attention", "CompositeImplicitAutograd")
def attention(q, k, v, attn_mask=None, causal=False, scale=None):
    """:func:`hetero.attention` as a torch op: ``attention_forward``'s ``out``."""
    return attention_forward(q, k, v, attn_mask, causal, scale)[0]


def _prepare(q, k, v, attn_mask=None, causal=False, scale=None):
    return prepare(q, k, v, causal, scale, attn_mask, STAND_IN, None)


#: ``torch.ops.hetero.attention`` for :mod:`.routes`.
ATTENTION = BridgeOp(lambda *args: torch.ops.hetero.attention(*args), _prepare)
