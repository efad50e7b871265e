"""``hetero.gemm``: the call — its argument record, dispatch traits, input checks and
the public function.

``out = alpha * (a @ b) + beta * bias``

Shapes: ``a (..., M, K)``, ``b (..., K, N)`` with batch dims broadcast as in
``torch.matmul``; ``bias`` broadcastable to ``(..., M, N)``; result ``(..., M, N)``.
Dtypes: float32, float16, bfloat16 (float64 on the reference backend); products
accumulate in float32 (float64 for float64). Any strides: kernels take transposed and
strided views as they are.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ... import dispatch, tuned
from ...kernel import dispatch_traits
from .. import _checks

OP = "gemm"
FEATURES = ("bias", "batch", "float32_out")
BUCKET_DIMS = ("M", "N", "K", "layout")  # layout: see layout_class()


class GemmArgs(NamedTuple):
    """What a gemm kernel receives: ``out = alpha * (a @ b) + beta * bias``.

    ``a (*batch, M, K)`` and ``b (*batch, K, N)`` of one dtype, batch dims already
    broadcast (strides may be 0), any strides; ``out (*batch, M, N)`` in that dtype or
    float32 (for float16/bfloat16 inputs); ``bias`` ``None`` or expanded to ``out``'s
    shape, the inputs' dtype or float32; ``alpha``, ``beta`` python floats. Accumulate
    in float32 (float64 for float64) and round once."""

    a: torch.Tensor
    b: torch.Tensor
    out: torch.Tensor
    bias: torch.Tensor | None = None
    alpha: float = 1.0
    beta: float = 1.0


@dispatch_traits
class GemmTraits(NamedTuple):
    """What dispatch knows about a ``gemm`` call. ``out_dtype``: ``None`` when it is
    ``dtype`` (the usual case). ``align``: the largest power of two (capped at 16)
    dividing every data pointer, in bytes — ``None`` (not computed) while no registered
    kernel of the op declares an alignment. ``bucket``: ``(M, N, K)`` rounded up to
    powers of two (:mod:`hetero.tuned`) and the operands' :func:`layout_class`, ``None``
    while no tuned table is in use. ``sizes``: ``(M, N, K)``, ``None`` while no kernel
    of the op limits them."""

    SIZES = ("M", "N", "K")

    op: str
    device: torch.device
    dtype: torch.dtype
    out_dtype: torch.dtype | None
    bias: bool
    batch: bool
    align: int | None
    bucket: tuple[int, int, int, int] | None = None
    sizes: tuple[int, int, int] | None = None

    @property
    def features(self) -> frozenset[str]:
        return frozenset(name for name, used in (
            ("bias", self.bias), ("batch", self.batch),
            ("float32_out", self.out_dtype not in (None, self.dtype))) if used)


_DTYPES = frozenset(_checks.FLOAT_DTYPES)
_LOW_PRECISION = (torch.float16, torch.bfloat16)
_decisions = dispatch.decisions  # the hot path reads the cache directly
_wants_alignment = dispatch.wants_alignment
_wants_bucket = dispatch.wants_bucket
_wants_sizes = dispatch.wants_sizes
_current_scope = dispatch.current_scope.get
_new_record = tuple.__new__  # a record without the NamedTuple's Python-level __new__
#: ``hetero_route::gemm(a, b)``: the common case served natively, ``None`` for any call it
#: leaves to the Python path (:func:`hetero.native_entries.gemm_entry`, set at import).
native_gemm = None


def prepare(a, b, bias, alpha, beta, out, backend) -> tuple[tuple, GemmArgs]:
    """Validate and normalise; return the dispatch key and the kernel's record.

    Ordered for the common case (2-D, no bias, fresh output): every tensor attribute
    is read once, and the rarer checks live in the cold helpers below."""
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        _checks.tensor(a, "a")
        _checks.tensor(b, "b")
    dtype = a.dtype
    if dtype not in _DTYPES or b.dtype is not dtype:
        _checks.float_dtype(a, "a")
        _checks.same_dtype(b, "b", dtype, "a")
    device = a.device
    if b.device != device:
        _checks.same_device(b, "b", device, "a")
    a_shape, b_shape = a.shape, b.shape
    if len(a_shape) == 2 and len(b_shape) == 2 and a_shape[1] == b_shape[0]:
        batched, out_shape = False, (a_shape[0], b_shape[1])
    else:
        a, b, out_shape = _broadcast(a, b, a_shape, b_shape)
        batched = True
    if type(alpha) is not float or type(beta) is not float:
        alpha = _checks.real_scalar(alpha, "alpha")
        beta = _checks.real_scalar(beta, "beta")
    if bias is not None:
        bias = _check_bias(bias, dtype, device, out_shape)
    if (a.requires_grad or b.requires_grad or (bias is not None and bias.requires_grad)) \
            and torch.is_grad_enabled():
        _checks.no_autograd(OP, a, b, bias)
    if out is None:
        out = torch.empty(out_shape, dtype=dtype, device=device)
        out_dtype = None  # same as dtype; None hashes faster
    elif out is _checks.STAND_IN:
        out, out_dtype = _checks.stand_in(out_shape, dtype, device), None
    else:
        out_dtypes = (dtype, torch.float32) if dtype in _LOW_PRECISION else (dtype,)
        _checks.check_out(out, out_shape, out_dtypes, device, (("a", a), ("b", b), ("bias", bias)))
        out_dtype = None if out.dtype is dtype else out.dtype
    if backend is not None and type(backend) is not str:
        backend = tuple(backend)
    align = _checks.alignment(a, b, bias, out) if _wants_alignment[OP] else None
    bucket = ((*tuned.bucket(out_shape[-2], out_shape[-1], a.shape[-1]), layout_class(a, b))
              if _wants_bucket[OP] else None)
    sizes = (*out_shape[-2:], a.shape[-1]) if _wants_sizes[OP] else None
    key = (OP, device, dtype, out_dtype, bias is not None, batched, align, bucket, sizes,
           backend, _current_scope())
    return key, _new_record(GemmArgs, (a, b, out, bias, alpha, beta))


def layout_class(a: torch.Tensor, b: torch.Tensor) -> int:
    """How the operands are laid out, as the tuned table tells calls apart: 2 if ``a``
    is column-major (a transposed view, as the backward's ``x.t()``), plus 1 if ``b``
    is (``w.t()`` of a row-major weight, as ``F.linear`` passes it)."""
    return 2 * _column_major(a) + _column_major(b)


def _column_major(t: torch.Tensor) -> bool:
    return t.stride(-2) == 1 and t.stride(-1) != 1 and t.shape[-1] > 1


def _broadcast(a, b, a_shape, b_shape):
    """Batched (or malformed) operands: check, and expand batch dims (as views)."""
    if len(a_shape) < 2:
        raise ValueError(f"a: expected at least 2 dims (..., M, K), got shape {tuple(a_shape)}")
    if len(b_shape) < 2:
        raise ValueError(f"b: expected at least 2 dims (..., K, N), got shape {tuple(b_shape)}")
    M, K, N = a_shape[-2], a_shape[-1], b_shape[-1]
    if b_shape[-2] != K:
        raise ValueError(f"b: expected {K} rows to match a's K (a is {tuple(a_shape)}), "
                         f"got shape {tuple(b_shape)}")
    try:
        batch = tuple(torch.broadcast_shapes(a_shape[:-2], b_shape[:-2]))
    except RuntimeError:
        raise ValueError(f"b: batch dims {tuple(b_shape[:-2])} do not broadcast with "
                         f"a's {tuple(a_shape[:-2])}") from None
    if a_shape[:-2] != batch:
        a = a.expand(*batch, M, K)
    if b_shape[:-2] != batch:
        b = b.expand(*batch, K, N)
    return a, b, (*batch, M, N)


def _check_bias(bias, dtype, device, out_shape):
    _checks.tensor(bias, "bias")
    if bias.dtype is not dtype and bias.dtype is not torch.float32:
        allowed = {_checks.dtype_name(dtype), "float32"}
        raise TypeError(f"bias: expected dtype {' or '.join(sorted(allowed))}, "
                        f"got {_checks.dtype_name(bias.dtype)}")
    _checks.same_device(bias, "bias", device, "a")
    try:
        return bias.expand(out_shape)
    except RuntimeError:
        raise ValueError(f"bias: shape {tuple(bias.shape)} does not broadcast to the "
                         f"output's {out_shape}") from None


def gemm(a: torch.Tensor, b: torch.Tensor, *, bias: torch.Tensor | None = None,
         alpha: float = 1.0, beta: float = 1.0, out: torch.Tensor | None = None,
         backend: str | list[str] | None = None) -> torch.Tensor:
    """``alpha * (a @ b) + beta * bias`` on the best backend for the call.

    Args:
        a: ``(..., M, K)``, float32/float16/bfloat16 (float64 on ``reference``).
        b: ``(..., K, N)``, same dtype and device as ``a``; batch dims broadcast.
        bias: optional, broadcastable to ``(..., M, N)``; ``a``'s dtype or float32.
            Ignored when ``beta == 0``.
        alpha, beta: real scalars.
        out: optional ``(..., M, N)`` tensor to write into, ``a``'s dtype (or float32
            for float16/bfloat16 inputs); must not share memory with the inputs.
        backend: a backend name or priority list for this call only (exclusive
            unless it contains ``"*"``).

    Returns:
        ``out``, or a new ``(..., M, N)`` tensor of ``a``'s dtype.

    Raises:
        TypeError, ValueError: bad input, naming the argument.
        hetero.DispatchError: no candidate can serve the call (see ``.decision``).
    """
    if native_gemm is not None and bias is None and out is None and backend is None:
        try:
            if type(alpha) is float and type(beta) is float and alpha == 1.0 and beta == 1.0 \
                    and not (a.requires_grad or b.requires_grad):
                result = native_gemm(a, b)
                if result is not None:
                    return result
        except Exception:  # noqa: BLE001 - the Python path below reports it, naming the argument
            pass
    key, args = prepare(a, b, bias, alpha, beta, out, backend)
    (_decisions.get(key) or dispatch.resolve(key, args))(args)
    return args.out
