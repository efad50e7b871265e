"""The PyTorch calls :func:`hetero.enable` routes to ``torch.ops.hetero.scaled_gemm``:
``torch._scaled_mm`` (fp8) and ``torch._int_mm`` (int8 -> int32).

What hetero does not serve stays with PyTorch, counted with the reason: an fp8 output
(``out_dtype`` left at the input dtype), ``scale_result``, mixed fp8 encodings, devices
not enabled. An ``out=`` tensor (``torch.compile``'s generated code passes one) receives
a copy of the result. ``use_fast_accum`` is accepted and ignored: hetero always accumulates in
float32.
"""

from __future__ import annotations

import torch

from ...routing import Call, Route, tensors
from .._checks import dtype_name
from .api import FP8_DTYPES, OUT_DTYPES
from .torch_op import SCALED_GEMM

_FP8 = frozenset(FP8_DTYPES)


def _unfit(mode, a, b) -> str | None:
    if a.device.type not in mode.devices:
        return f"device type {a.device.type!r} is not enabled"
    if b.dtype != a.dtype or b.device != a.device:
        return "operands of mixed dtypes or devices"
    return None


def _scaled_mm(mode, a, b, scale_a, scale_b, bias, scale_result, out_dtype, use_fast_accum,
               out):
    if not tensors(a, b, scale_a, scale_b) or a.dim() != 2 or b.dim() != 2 \
            or a.shape[1] != b.shape[0]:
        return None
    if a.dtype not in _FP8:
        return f"dtype {dtype_name(a.dtype)} is not served"
    reason = _unfit(mode, a, b)
    if reason is not None:
        return reason
    if scale_result is not None:
        return "scale_result is not served"
    out_dtype = a.dtype if out_dtype is None else out_dtype
    if out_dtype not in OUT_DTYPES:
        return f"out_dtype {dtype_name(out_dtype)} is not served"
    return _with_out(Call(SCALED_GEMM, (a, b, scale_a, scale_b, bias, out_dtype)), out,
                     (a.shape[0], b.shape[1]), out_dtype)


def _int_mm(mode, a, b, out):
    if not tensors(a, b) or a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0] \
            or a.dtype is not torch.int8:
        return None
    return _unfit(mode, a, b) or _with_out(
        Call(SCALED_GEMM, (a, b, None, None, None, torch.int32)), out,
        (a.shape[0], b.shape[1]), torch.int32)


def _with_out(call: Call, out, shape: tuple, dtype: torch.dtype):
    """``call``, its result copied into ``out`` when one is given (as torch.compile's
    generated code passes one); ``None`` (PyTorch's own errors) for an ``out`` of
    another shape, dtype or device."""
    if out is None:
        return call
    if not tensors(out) or tuple(out.shape) != shape or out.dtype != dtype \
            or out.device != call.args[0].device:
        return None
    return call._replace(finish=out.copy_)


def _flops(args, result):
    a = args[0] if args else None
    return 2.0 * result.numel() * a.shape[-1] if tensors(a) else 0.0


ROUTES = {
    torch._scaled_mm: Route(
        "scaled_gemm", _scaled_mm,
        ("input", "mat2", "scale_a", "scale_b", "bias", "scale_result", "out_dtype",
         "use_fast_accum", "out"),
        {"bias": None, "scale_result": None, "out_dtype": None, "use_fast_accum": False,
         "out": None},
        _flops),
    torch._int_mm: Route("scaled_gemm", _int_mm, ("input", "mat2", "out"), {"out": None},
                         _flops),
}
