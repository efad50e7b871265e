"""``torch.ops.hetero.gemm(a, b, bias=None, alpha=1., beta=1.) -> out``: :func:`hetero.gemm`
as a torch operator, with a fake impl and autograd (see :mod:`hetero.torch_ops`).

Its gradients are two more ``hetero::gemm`` calls, so it differentiates any number of
times. Its CPU kernel runs the common case (two matrices, no bias, ``alpha = beta = 1``)
on a native entry (:func:`hetero.native_entries.gemm_op_entry`), counted natively, and
everything else, or every call while something observes hetero's counters (an audit),
as the other devices do.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ... import counters
from ...routing import BridgeOp
from ...torch_ops import plain_torch, serve
from .._checks import STAND_IN
from .api import prepare
from .numerics import flops, reference_gemm


def _serve(a: Tensor, b: Tensor, bias: Optional[Tensor], alpha: float, beta: float) -> Tensor:
    with plain_torch():
        key, args = prepare(a, b, bias, alpha, beta, None, None)
        if serve(key, args, flops(args)) is None:
            return reference_gemm(a, b, bias, alpha, beta, compute_dtype=a.dtype)
        return args.out


@torch.library.custom_op("hetero::gemm", mutates_args=())
def gemm(a: Tensor, b: Tensor, bias: Optional[Tensor] = None, alpha: float = 1.0,
         beta: float = 1.0) -> Tensor:
    """``alpha * (a @ b) + beta * bias`` as :func:`hetero.gemm` computes it, returning a
    new ``(..., M, N)`` tensor of ``a``'s dtype."""
    return _serve(a, b, bias, alpha, beta)


#: ``hetero_route::gemm_op(a, b)``, or ``None`` where the native route cannot run (set at
#: import by :mod:`hetero`).
native_gemm_op = None
_observers = counters.observers


def _cpu_gemm(a, b, bias=None, alpha=1.0, beta=1.0):
    """The CPU kernel: the common case natively where it can, else as any device's. Registered
    as a plain kernel, without the checks ``custom_op`` wraps its kernels in (whether the
    result aliases an input: it never does)."""
    if bias is None and alpha == 1.0 and beta == 1.0 and native_gemm_op is not None \
            and not _observers:
        result = native_gemm_op(a, b)
        if result is not None:
            return result
    return _serve(a, b, bias, alpha, beta)


_library = torch.library.Library("hetero", "IMPL")
_library.impl("gemm", _cpu_gemm, "CPU")


@gemm.register_fake
def _gemm_fake(a, b, bias=None, alpha=1.0, beta=1.0):
    if a.dim() < 2 or b.dim() < 2 or a.shape[-1] != b.shape[-2] or a.dtype != b.dtype:
        raise ValueError(f"b: shape {tuple(b.shape)} / dtype {b.dtype} do not fit a's "
                         f"{tuple(a.shape)} / {a.dtype} for a @ b")
    batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return a.new_empty((*batch, a.shape[-2], b.shape[-1]))


def _setup(ctx, inputs, output):
    a, b, bias, alpha, beta = inputs
    ctx.save_for_backward(a, b)
    ctx.alpha, ctx.beta = alpha, beta
    ctx.bias_shape = None if bias is None else bias.shape
    # needs_input_grad covers only the arguments passed, so ask the bias itself
    ctx.bias_needs_grad = bias is not None and bias.requires_grad and beta != 0


def _column_major(t: Tensor) -> bool:
    """A transposed view of row-major storage (``w.t()``, as ``F.linear`` passes it)."""
    return t.stride(-2) == 1 and t.stride(-1) != 1


def _backward(ctx, grad):
    a, b = ctx.saved_tensors
    grad_a = grad_b = grad_bias = None
    # dA = alpha dOut B^T and dB = alpha A^T dOut, summed over broadcast batch dims. A
    # gradient is computed in its input's layout: for B = W^T, dB^T = alpha dOut^T A is
    # written row-major, so it reaches W.grad without a transposing copy.
    if ctx.needs_input_grad[0]:
        grad_a = (gemm(b, grad.mT, None, ctx.alpha, 1.0).mT if _column_major(a)
                  else gemm(grad, b.mT, None, ctx.alpha, 1.0)).sum_to_size(a.shape)
    if ctx.needs_input_grad[1]:
        grad_b = (gemm(grad.mT, a, None, ctx.alpha, 1.0).mT if _column_major(b)
                  else gemm(a.mT, grad, None, ctx.alpha, 1.0)).sum_to_size(b.shape)
    if ctx.bias_needs_grad:
        grad_bias = (grad if ctx.beta == 1 else grad * ctx.beta).sum_to_size(ctx.bias_shape)
    return grad_a, grad_b, grad_bias, None, None


gemm.register_autograd(_backward, setup_context=_setup)


def _prepare(a, b, bias=None, alpha=1.0, beta=1.0):
    return prepare(a, b, bias, alpha, beta, STAND_IN, None)


#: ``torch.ops.hetero.gemm`` for :mod:`.routes`.
GEMM = BridgeOp(gemm, _prepare)
