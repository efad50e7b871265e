"""The PyTorch calls :func:`hetero.enable` routes to ``torch.ops.hetero.gemm``:
``torch.mm``, ``torch.bmm``, ``torch.addmm``, ``torch.matmul`` / ``@`` (and the Tensor
methods) and ``F.linear``. ``linear`` and ``matmul`` arrive whole, so the leading dims
of ``x @ W`` fold into one GEMM, as aten does. 1-D operands stay with PyTorch."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...routing import Call, Route, real, tensors, unfit
from .numerics import gemm_flops
from .torch_op import GEMM


def _batch_broadcasts(a_batch, b_batch) -> bool:
    return all(x == y or x == 1 or y == 1 for x, y in zip(reversed(a_batch), reversed(b_batch)))


def _fold(x):
    """``x (..., K)`` as ``(rows, K)``; the row count is explicit so that K = 0 folds
    (``reshape(-1, 0)`` cannot infer it)."""
    return x.reshape(math.prod(x.shape[:-1]), x.shape[-1])


def _mm(mode, a, b):
    if not tensors(a, b) or a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
        return None
    return unfit(mode, a, b) or Call(GEMM, (a, b))


def _bmm(mode, a, b):
    if not tensors(a, b) or a.dim() != 3 or b.dim() != 3 or a.shape[0] != b.shape[0] \
            or a.shape[2] != b.shape[1]:
        return None
    return unfit(mode, a, b) or Call(GEMM, (a, b))


def _addmm(mode, bias, a, b, beta, alpha):
    if not tensors(bias, a, b) or a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0] \
            or bias.dim() > 2 or not _batch_broadcasts(bias.shape, (a.shape[0], b.shape[1])):
        return None
    if not (real(beta) and real(alpha)):
        return "alpha or beta is not a real number"
    return unfit(mode, a, b, bias) or Call(GEMM, (a, b, bias, float(alpha), float(beta)))


def _matmul(mode, a, b):
    if not tensors(a, b):
        return None
    if a.dim() < 2 or b.dim() < 2:
        return "1-D operand"
    if a.shape[-1] != b.shape[-2] or not _batch_broadcasts(a.shape[:-2], b.shape[:-2]):
        return None
    reason = unfit(mode, a, b)
    if reason is not None:
        return reason
    if b.dim() == 2 and a.dim() > 2:  # fold the leading dims into M: one GEMM, as aten
        return Call(GEMM, (_fold(a), b),
                    lambda out: out.reshape(*a.shape[:-1], b.shape[1]))
    return Call(GEMM, (a, b))


def _linear(mode, x, weight, bias):
    if not tensors(x, weight) or weight.dim() != 2 or x.dim() == 0 \
            or x.shape[-1] != weight.shape[1]:
        return None
    if x.dim() == 1:
        return "1-D input"
    if bias is not None and (not tensors(bias) or tuple(bias.shape) != (weight.shape[0],)):
        return "bias is not of shape (out_features,)"
    reason = unfit(mode, x, weight) if bias is None else unfit(mode, x, weight, bias)
    if reason is not None:
        return reason
    return Call(GEMM, (_fold(x), weight.t(), bias),
                lambda out: out.reshape(*x.shape[:-1], weight.shape[0]))


def _flops(left: int):
    """FLOPs of a call PyTorch computed, from its ``left`` operand and its result."""
    def flops(args, result):
        a = args[left] if len(args) > left else None
        return gemm_flops(result.numel(), 1, a.shape[-1]) if tensors(a) else 0.0
    return flops


_MM = Route("gemm", _mm, ("input", "mat2"), {}, _flops(0))
_BMM = Route("gemm", _bmm, ("input", "mat2"), {}, _flops(0))
_ADDMM = Route("gemm", _addmm, ("input", "mat1", "mat2", "beta", "alpha"),
               {"beta": 1, "alpha": 1}, _flops(1))
_MATMUL = Route("gemm", _matmul, ("input", "other"), {}, _flops(0))

ROUTES = {
    torch.mm: _MM, torch.Tensor.mm: _MM,
    torch.bmm: _BMM, torch.Tensor.bmm: _BMM,
    torch.addmm: _ADDMM, torch.Tensor.addmm: _ADDMM,
    torch.matmul: _MATMUL, torch.Tensor.matmul: _MATMUL, torch.Tensor.__matmul__: _MATMUL,
    F.linear: Route("gemm", _linear, ("input", "weight", "bias"), {"bias": None}, _flops(0)),
}
