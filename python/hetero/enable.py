"""``hetero.enable()``: PyTorch's matmul family and scaled-dot-product attention, routed to
hetero's torch ops while enabled.

==========================================================  =========================
``torch.mm``, ``torch.bmm``, ``torch.addmm``, ``torch.matmul``  ``torch.ops.hetero.gemm``
and ``@`` (and the Tensor methods), ``F.linear``
``F.scaled_dot_product_attention``                          ``torch.ops.hetero.attention``
==========================================================  =========================

It is a torch *function* mode: it sees calls as the model wrote them, so ``linear`` and
``matmul`` arrive whole (the leading dims of ``x @ W`` fold into one GEMM, as aten
does), autograd records hetero's ops with their own backward, and ``torch.compile``
traces through it — a compiled graph calls ``torch.ops.hetero.*`` with no graph break.

Calls that do not fit hetero's ops are left to PyTorch and counted in
:func:`hetero.stats` with the reason: 1-D operands, ``out=``, dropout, a mask that needs
a gradient, non-float dtypes, devices not enabled. So are calls the ops find no hetero
kernel for (``torch.ops.hetero.*`` decide that). Arguments PyTorch would reject go to
PyTorch untouched, so errors are PyTorch's own.

Differences from PyTorch a routed call may show: results within the documented
tolerances rather than bitwise equal; a query row that may see no key gives zeros
(PyTorch gives NaN). ``is_causal=True`` with ``Sq != Sk`` keeps PyTorch's top-left
alignment (it becomes a mask; hetero's own ``causal`` is bottom-right).

Torch function modes are per thread: enabling affects the calling thread.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, NamedTuple

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode, _get_current_function_mode_stack

from . import counters, registry, torch_ops
from .dispatch import REFERENCE
from .ops._checks import FLOAT_DTYPES

OPS = ("gemm", "attention")
_FLOAT = frozenset(FLOAT_DTYPES)


# ---------------------------------------------------------------- routing one call
# A route takes the mode and the bound arguments and returns the result (hetero served
# the call), a reason (PyTorch serves it, counted) or None (PyTorch serves it uncounted:
# arguments it will reject itself).

def _tensors(*values) -> bool:
    return all(isinstance(v, torch.Tensor) for v in values)


def _unfit(mode, *tensors) -> str | None:
    """Why hetero should not take these operands (None: it may)."""
    first = tensors[0]
    if first.dtype not in _FLOAT:
        return f"dtype {str(first.dtype).removeprefix('torch.')} is not served"
    if first.device.type not in mode.devices:
        return f"device type {first.device.type!r} is not enabled"
    for t in tensors[1:]:
        if t.dtype != first.dtype or t.device != first.device:
            return "operands of mixed dtypes or devices"
    return None


def _real(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _batch_broadcasts(a_batch, b_batch) -> bool:
    return all(x == y or x == 1 or y == 1 for x, y in zip(reversed(a_batch), reversed(b_batch)))


def _mm(mode, a, b):
    if not _tensors(a, b) or a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
        return None
    return _unfit(mode, a, b) or torch_ops.gemm(a, b)


def _bmm(mode, a, b):
    if not _tensors(a, b) or a.dim() != 3 or b.dim() != 3 or a.shape[0] != b.shape[0] \
            or a.shape[2] != b.shape[1]:
        return None
    return _unfit(mode, a, b) or torch_ops.gemm(a, b)


def _addmm(mode, bias, a, b, beta, alpha):
    if not _tensors(bias, a, b) or a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0] \
            or bias.dim() > 2 or not _batch_broadcasts(bias.shape, (a.shape[0], b.shape[1])):
        return None
    if not (_real(beta) and _real(alpha)):
        return "alpha or beta is not a real number"
    return _unfit(mode, a, b, bias) or torch_ops.gemm(a, b, bias, float(alpha), float(beta))


def _matmul(mode, a, b):
    if not _tensors(a, b):
        return None
    if a.dim() < 2 or b.dim() < 2:
        return "1-D operand"
    if a.shape[-1] != b.shape[-2] or not _batch_broadcasts(a.shape[:-2], b.shape[:-2]):
        return None
    unfit = _unfit(mode, a, b)
    if unfit is not None:
        return unfit
    if b.dim() == 2 and a.dim() > 2:  # fold the leading dims into M: one GEMM, as aten
        out = torch_ops.gemm(a.reshape(-1, a.shape[-1]), b)
        return out.reshape(*a.shape[:-1], b.shape[1])
    return torch_ops.gemm(a, b)


def _linear(mode, x, weight, bias):
    if not _tensors(x, weight) or weight.dim() != 2 or x.dim() == 0 \
            or x.shape[-1] != weight.shape[1]:
        return None
    if x.dim() == 1:
        return "1-D input"
    if bias is not None and (not _tensors(bias) or tuple(bias.shape) != (weight.shape[0],)):
        return "bias is not of shape (out_features,)"
    unfit = _unfit(mode, x, weight) if bias is None else _unfit(mode, x, weight, bias)
    if unfit is not None:
        return unfit
    out = torch_ops.gemm(x.reshape(-1, x.shape[-1]), weight.t(), bias)
    return out.reshape(*x.shape[:-1], weight.shape[0])


def _sdpa(mode, q, k, v, attn_mask, dropout_p, is_causal, scale, enable_gqa):
    if not _tensors(q, k, v):
        return None
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        return "q, k, v not 4-D (B, H, S, D)"
    (B, Hq, Sq, D), (Hkv, Sk) = q.shape, k.shape[1:3]
    if k.shape[0] != B or k.shape[3] != D or v.shape[:3] != k.shape[:3] \
            or (Hq % Hkv if enable_gqa else Hq != Hkv) or (is_causal and attn_mask is not None):
        return None
    if dropout_p != 0:
        return "dropout_p > 0"
    if scale is not None and not _real(scale):
        return None
    unfit = _unfit(mode, q, k, v)
    if unfit is not None:
        return unfit
    if attn_mask is not None:
        if not _tensors(attn_mask) or attn_mask.dtype not in (torch.bool, q.dtype):
            return None
        if attn_mask.requires_grad:
            return "attn_mask requires grad"
    causal = bool(is_causal)
    if causal and Sq != Sk:  # PyTorch aligns this causal mask top-left, hetero bottom-right
        attn_mask = torch.ones(Sq, Sk, dtype=torch.bool, device=q.device).tril()
        causal = False
    return torch.ops.hetero.attention(q, k, v, attn_mask, causal, scale)


def _gemm_flops(left: int):
    def flops(args, result):
        a = args[left] if len(args) > left else None
        return counters.gemm_flops(result.numel(), 1, a.shape[-1]) if _tensors(a) else 0.0
    return flops


def _sdpa_flops(args, result):
    if len(args) < 3 or not _tensors(*args[:3]) or args[0].dim() < 2:
        return 0.0
    q, k, v = args[:3]
    heads = q.numel() // (q.shape[-2] * q.shape[-1] or 1)
    return counters.attention_flops(heads, q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1],
                                    False)


class _Route(NamedTuple):
    """How one PyTorch function is routed: its hetero op, the route, the parameter names
    (and defaults) to bind its arguments to, and its FLOPs when PyTorch computes it."""

    op: str
    route: Callable
    names: tuple[str, ...]
    defaults: dict
    flops: Callable


_MM = ("gemm", _mm, ("input", "mat2"), {}, _gemm_flops(0))
_BMM = ("gemm", _bmm, ("input", "mat2"), {}, _gemm_flops(0))
_ADDMM = ("gemm", _addmm, ("input", "mat1", "mat2", "beta", "alpha"),
          {"beta": 1, "alpha": 1}, _gemm_flops(1))
_MATMUL = ("gemm", _matmul, ("input", "other"), {}, _gemm_flops(0))
_ROUTES = {func: _Route(*spec) for func, spec in (
    (torch.mm, _MM), (torch.Tensor.mm, _MM),
    (torch.bmm, _BMM), (torch.Tensor.bmm, _BMM),
    (torch.addmm, _ADDMM), (torch.Tensor.addmm, _ADDMM),
    (torch.matmul, _MATMUL), (torch.Tensor.matmul, _MATMUL),
    (torch.Tensor.__matmul__, _MATMUL),
    (F.linear, ("gemm", _linear, ("input", "weight", "bias"), {"bias": None},
                _gemm_flops(0))),
    (F.scaled_dot_product_attention, (
        "attention", _sdpa,
        ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale",
         "enable_gqa"),
        {"attn_mask": None, "dropout_p": 0.0, "is_causal": False, "scale": None,
         "enable_gqa": False}, _sdpa_flops)),
)}


def _bind(args, kwargs, names, defaults):
    """The call's arguments in ``names`` order, or None when it passes anything else
    (``out=``, an argument a newer PyTorch added): such calls stay with PyTorch."""
    if len(args) > len(names) or any(k not in names for k in kwargs):
        return None
    values = dict(defaults)
    values.update(zip(names, args))
    values.update(kwargs)
    if len(values) != len(names):
        return None
    return [values[n] for n in names]


class _Routing(TorchFunctionMode):
    """The torch function mode behind enable()/enabled()."""

    def __init__(self, ops: frozenset[str], devices: frozenset[str], by_enable: bool):
        super().__init__()
        self.ops, self.devices, self.by_enable = ops, devices, by_enable

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        route = _ROUTES.get(func)
        if route is None or route.op not in self.ops:
            return func(*args, **kwargs)
        bound = _bind(args, kwargs, route.names, route.defaults)
        verdict = "unsupported arguments (out=, ...)" if bound is None \
            else route.route(self, *bound)
        if isinstance(verdict, torch.Tensor):
            return verdict
        result = func(*args, **kwargs)
        if verdict is not None and not torch.compiler.is_compiling():
            counters.record_fallback(route.op, f"{func.__name__}: {verdict}",
                                  route.flops(args, result))
        return result


# ---------------------------------------------------------------- switching it on and off
def served_device_types() -> frozenset[str]:
    """Device types that some available hetero backend (other than the reference)
    serves by default: what :func:`enable` routes unless told otherwise."""
    return frozenset(
        e.backend.device_type for e in registry.entries().values()
        if e.backend is not None and e.name != REFERENCE and e.backend.default
        and not e.reasons_unavailable())


def _config(ops, devices) -> tuple[frozenset[str], frozenset[str]]:
    if ops is None:
        ops = OPS
    ops = (ops,) if isinstance(ops, str) else tuple(ops)
    unknown = [op for op in ops if op not in OPS]
    if unknown:
        raise ValueError(f"ops: unknown {unknown}; expected some of {OPS}")
    if devices is None:
        devices = served_device_types()
    elif isinstance(devices, (str, torch.device)):
        devices = (devices,)
    types = frozenset(torch.device(d).type if isinstance(d, str) else d.type for d in devices)
    return frozenset(ops), types


def _active() -> _Routing | None:
    for mode in reversed(_get_current_function_mode_stack()):
        if isinstance(mode, _Routing):
            return mode
    return None


def enable(ops: Iterable[str] | str | None = None,
           devices: Iterable[str | torch.device] | str | None = None) -> None:
    """Route PyTorch's matmul family and ``scaled_dot_product_attention`` to hetero on
    the calling thread until :func:`disable` (see the module docs for what is routed).

    Args:
        ops: ``"gemm"`` and/or ``"attention"`` (default both).
        devices: device types to route (default: those a hetero backend serves here,
            :func:`served_device_types`); calls on others stay with PyTorch.

    Calling it again while enabled changes what is routed.
    """
    ops, devices = _config(ops, devices)
    mode = _active()
    if mode is None:
        _Routing(ops, devices, by_enable=True).__enter__()
    else:
        mode.ops, mode.devices = ops, devices


def disable() -> None:
    """Stop what :func:`enable` started: PyTorch runs exactly as before. Does nothing
    when hetero is not enabled."""
    mode = _active()
    if mode is None:
        return
    if not mode.by_enable:
        raise RuntimeError("hetero.disable(): hetero is enabled by a `with "
                           "hetero.enabled()` block here, which ends it on exit")
    if _get_current_function_mode_stack()[-1] is not mode:
        raise RuntimeError("hetero.disable(): a torch function mode entered after "
                           "hetero.enable() is still active; exit it first")
    mode.__exit__(None, None, None)


@contextmanager
def enabled(ops: Iterable[str] | str | None = None,
            devices: Iterable[str | torch.device] | str | None = None) -> Iterator[None]:
    """:func:`enable` for the duration of a ``with`` block (arguments as there); inside
    an enabled region it changes what is routed until the block ends.

    >>> with hetero.enabled(ops="gemm", devices="cpu"):
    ...     logits = model(tokens)
    """
    config = _config(ops, devices)
    mode = _active()
    if mode is None:
        with _Routing(*config, by_enable=False):
            yield
        return
    saved = mode.ops, mode.devices
    mode.ops, mode.devices = config
    try:
        yield
    finally:
        mode.ops, mode.devices = saved


def is_enabled() -> bool:
    """Whether hetero routes PyTorch's calls on this thread right now."""
    return _active() is not None
