"""``hetero.scaled_gemm``: the call — its argument record, dispatch traits, scale
recipes, input checks and the public function.

``out = (a · scale_a) @ (b · scale_b) + bias``, as ``torch._scaled_mm`` defines it.

Shapes: ``a (M, K)``, ``b (K, N)`` (any strides; ``b`` is usually ``w.t()`` of a
row-major ``(N, K)`` weight, the layout ``torch._scaled_mm`` asks for); result ``(M, N)``.
Input dtypes: ``float8_e4m3fn``, ``float8_e5m2`` (OCP), ``float8_e4m3fnuz``,
``float8_e5m2fnuz`` (FNUZ, as MI300 uses) and ``int8``; ``a`` and ``b`` of one dtype.

Scale recipes, told apart by the scales' shapes (float32, any strides):

=============  ==========================  ==================================
recipe         ``scale_a``                 ``scale_b``
=============  ==========================  ==================================
``tensor``     one element (``()``,        one element
               ``(1,)``, ``(1, 1)``)
``row``        ``(M, 1)``: one per row     ``(1, N)``: one per column
``block``      ``(M, K/128)``: one per     ``(K/128, ceil(N/128))``: one per
               1×128 of ``a``              128×128 of ``b`` (DeepSeek-V3's)
=============  ==========================  ==================================

``tensor`` and ``row`` are the shapes PyTorch 2.13's CPU ``torch._scaled_mm`` accepts
(``row`` scales contiguous there; any strides here). Its CPU path refuses block scales;
hetero's ``block`` recipe takes the shapes its CUDA path (``BlockWise1x128`` for ``a``,
``BlockWise128x128`` for ``b``) uses — including the outer-dim-major strides and a
``scale_b`` whose K-block count is padded up to a multiple of 4 (the padding is not
read) — and needs K to be a multiple of 128. For ``int8``, ``scale_a`` and ``scale_b``
may be ``None`` (unit scales): with ``out_dtype=torch.int32`` and no bias that is
``torch._int_mm`` exactly.

Products are exact (an fp8 value is exact in bfloat16; int8 in int32); they accumulate
in float32 (int32 for int8), are scaled once per output (per 128-deep block for
``block``), and round once to ``out_dtype``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ... import dispatch, tuned
from ...kernel import dispatch_traits
from .. import _checks

OP = "scaled_gemm"
FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2, torch.float8_e4m3fnuz,
              torch.float8_e5m2fnuz)
INPUT_DTYPES = (*FP8_DTYPES, torch.int8)
OUT_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
RECIPES = ("tensor", "row", "block")
BLOCK = 128  # the block recipe's 1×128 (a) and 128×128 (b) tiles
# Features: the scale recipe beyond tensor-wise, a bias, an output other than bfloat16.
FEATURES = ("row", "block", "bias", "float16_out", "float32_out", "int32_out")
BUCKET_DIMS = ("M", "N", "K", "layout")


class ScaledGemmArgs(NamedTuple):
    """What a scaled_gemm kernel receives.

    ``a (M, K)``, ``b (K, N)``: one dtype of :data:`INPUT_DTYPES`, any strides.
    ``scale_a``, ``scale_b``: float32, already in the recipe's 2-D shape — ``tensor``:
    ``(1, 1)`` each; ``row``: ``(M, 1)`` and ``(1, N)``; ``block``: ``(M, K/128)`` and
    ``(K/128, ceil(N/128))`` — any strides (unit scales of an int8 call are ``(1, 1)``
    ones). ``out (M, N)``: bfloat16/float16/float32, or int32 for an int8 call without
    scales or bias (``torch._int_mm``). ``bias``: ``None`` or ``(N,)`` float, added
    after scaling. ``recipe``: one of :data:`RECIPES`."""

    a: torch.Tensor
    b: torch.Tensor
    scale_a: torch.Tensor
    scale_b: torch.Tensor
    out: torch.Tensor
    recipe: str = "tensor"
    bias: torch.Tensor | None = None


@dispatch_traits
class ScaledGemmTraits(NamedTuple):
    """What dispatch knows about a ``scaled_gemm`` call: the inputs' ``dtype``, the
    output's ``out_dtype``, the ``recipe``, whether there is a ``bias``; ``align``,
    ``bucket`` ((M, N, K) rounded up to powers of two and the operands' layout class, as
    gemm's) and ``sizes`` ((M, N, K)) only while a kernel of the op asks for them."""

    SIZES = ("M", "N", "K")

    op: str
    device: torch.device
    dtype: torch.dtype
    out_dtype: torch.dtype
    recipe: str
    bias: bool
    align: int | None
    bucket: tuple[int, int, int, int] | None = None
    sizes: tuple[int, int, int] | None = None

    @property
    def features(self) -> frozenset[str]:
        used = {self.recipe} - {"tensor"}
        if self.bias:
            used.add("bias")
        if self.out_dtype is not torch.bfloat16:
            used.add(f"{_checks.dtype_name(self.out_dtype)}_out")
        return frozenset(used)


_INPUTS = frozenset(INPUT_DTYPES)
_decisions = dispatch.decisions
_current_scope = dispatch.current_scope.get
#: ``hetero_route::scaled_gemm(a, b, scale_a, scale_b)``: the common case served natively,
#: ``None`` for any call it leaves to the Python path
#: (:func:`hetero.native_entries.scaled_gemm_entry`, set at import).
native_scaled_gemm = None


def prepare(a, b, scale_a, scale_b, bias, out_dtype, out, backend
            ) -> tuple[tuple, ScaledGemmArgs]:
    """Validate and normalise; return the dispatch key and the kernel's record."""
    _checks.tensor(a, "a")
    _checks.tensor(b, "b")
    dtype = a.dtype
    if dtype not in _INPUTS:
        raise TypeError(f"a: dtype {_checks.dtype_name(dtype)} is not supported (expected "
                        f"one of {', '.join(map(_checks.dtype_name, INPUT_DTYPES))})")
    if b.dtype is not dtype:
        raise TypeError(f"b: dtype {_checks.dtype_name(b.dtype)} does not match a's "
                        f"{_checks.dtype_name(dtype)} (mixed encodings are not served)")
    device = a.device
    _checks.same_device(b, "b", device, "a")
    if a.dim() != 2:
        raise ValueError(f"a: expected 2 dims (M, K), got shape {tuple(a.shape)}")
    if b.dim() != 2:
        raise ValueError(f"b: expected 2 dims (K, N), got shape {tuple(b.shape)}")
    (m, k), n = a.shape, b.shape[1]
    if b.shape[0] != k:
        raise ValueError(f"b: expected {k} rows to match a's K (a is {tuple(a.shape)}), "
                         f"got shape {tuple(b.shape)}")
    unscaled = scale_a is None and scale_b is None
    recipe, scale_a, scale_b = _recipe(scale_a, scale_b, dtype, device, m, n, k)
    out_dtype = _out_dtype(out_dtype, dtype, unscaled and bias is None)
    if bias is not None:
        bias = _check_bias(bias, device, n)
    _checks.no_autograd(OP, a, b, scale_a, scale_b, bias)
    out = _checks.output(out, (m, n), out_dtype, device,
                         (("a", a), ("b", b), ("scale_a", scale_a), ("scale_b", scale_b),
                          ("bias", bias)))
    if backend is not None and type(backend) is not str:
        backend = tuple(backend)
    align = _checks.alignment(a, b, out) if dispatch.wants_alignment[OP] else None
    bucket = ((*tuned.bucket(m, n, k), 2 * _column_major(a) + _column_major(b))
              if dispatch.wants_bucket[OP] else None)
    sizes = (m, n, k) if dispatch.wants_sizes[OP] else None
    key = (OP, device, dtype, out_dtype, recipe, bias is not None, align, bucket, sizes,
           backend, _current_scope())
    return key, ScaledGemmArgs(a, b, scale_a, scale_b, out, recipe, bias)


def _column_major(t: torch.Tensor) -> bool:
    return t.stride(-2) == 1 and t.stride(-1) != 1 and t.shape[-1] > 1


def block_count(size: int) -> int:
    """How many 128-blocks cover ``size``."""
    return -(-size // BLOCK)


def _recipe(scale_a, scale_b, dtype, device, m, n, k):
    """The recipe the scales' shapes name, and the scales in its 2-D shapes."""
    if scale_a is None and scale_b is None and dtype is torch.int8:
        one = torch.ones((1, 1), dtype=torch.float32, device=device)
        return "tensor", one, one
    for scale, name in ((scale_a, "scale_a"), (scale_b, "scale_b")):
        if scale is None:
            raise TypeError(f"{name}: expected a float32 tensor, got None (only int8 "
                            f"inputs may leave both scales out)")
        _checks.tensor(scale, name)
        if scale.dtype is not torch.float32:
            raise TypeError(f"{name}: expected dtype float32, got "
                            f"{_checks.dtype_name(scale.dtype)}")
        _checks.same_device(scale, name, device, "a")
    # scale_b's shape names the recipe; where it fits several (tiny shapes, where they
    # agree), the first that scale_a fits too.
    shape_a, shape_b = tuple(scale_a.shape), tuple(scale_b.shape)
    kb, nb = block_count(k), block_count(n)
    single = scale_b.numel() == 1 and len(shape_b) <= 2
    recipes = {
        "tensor": (single, scale_a.numel() == 1 and len(shape_a) <= 2, "one element"),
        "row": (shape_b == (1, n), shape_a == (m, 1), f"({m}, 1)"),
        "block": (len(shape_b) == 2 and shape_b[1] == nb and shape_b[0] in (kb, -(-kb // 4) * 4),
                  shape_a == (m, kb), f"({m}, {kb})")}
    named = [r for r, (b_fits, _, _) in recipes.items() if b_fits]
    if not named:
        raise ValueError(
            f"scale_b: shape {shape_b} names no scale recipe for b ({k}, {n}); expected "
            f"one element (tensor-wise), (1, {n}) (row-wise) or ({kb}, {nb}) (block-wise, "
            f"one per {BLOCK}x{BLOCK})")
    recipe = next((r for r in named if recipes[r][1]), None)
    if recipe is None:
        raise ValueError(f"scale_a: the {named[0]}-wise scale_b {shape_b} needs scale_a of "
                         f"{recipes[named[0]][2]}, got shape {shape_a}")
    if recipe == "tensor":
        return recipe, scale_a.reshape(1, 1), scale_b.reshape(1, 1)
    if recipe == "block":
        if k % BLOCK:
            raise ValueError(f"a: the block recipe needs K to be a multiple of {BLOCK}, "
                             f"got K = {k}")
        scale_b = scale_b[:kb]
    return recipe, scale_a, scale_b


def _out_dtype(out_dtype, dtype, plain_int_mm):
    if out_dtype is None:
        return torch.bfloat16
    if out_dtype is torch.int32 and dtype is torch.int8:
        if not plain_int_mm:
            raise TypeError("out_dtype: int32 results are for int8 inputs without scales "
                            "or bias (torch._int_mm)")
        return out_dtype
    if out_dtype not in OUT_DTYPES:
        raise TypeError(f"out_dtype: expected one of "
                        f"{', '.join(map(_checks.dtype_name, OUT_DTYPES))}"
                        f"{' or int32' if dtype is torch.int8 else ''}, got {out_dtype!r}")
    return out_dtype


def _check_bias(bias, device, n):
    _checks.tensor(bias, "bias")
    if bias.dtype not in OUT_DTYPES:
        raise TypeError(f"bias: expected dtype bfloat16, float16 or float32, got "
                        f"{_checks.dtype_name(bias.dtype)}")
    _checks.same_device(bias, "bias", device, "a")
    if tuple(bias.shape) != (n,):
        raise ValueError(f"bias: expected shape ({n},), got {tuple(bias.shape)}")
    return bias


def scaled_gemm(a: torch.Tensor, b: torch.Tensor, scale_a: torch.Tensor | None,
                scale_b: torch.Tensor | None, *, bias: torch.Tensor | None = None,
                out_dtype: torch.dtype | None = None, out: torch.Tensor | None = None,
                backend: str | list[str] | None = None) -> torch.Tensor:
    """``(a · scale_a) @ (b · scale_b) + bias`` on the best backend for the call, with
    ``torch._scaled_mm``'s meaning (see :mod:`hetero.ops.scaled_gemm.api` for the
    recipes and :mod:`hetero.ops.scaled_gemm.numerics` for the numerics at the edges).

    Args:
        a: ``(M, K)``: float8 (e4m3fn, e5m2, e4m3fnuz, e5m2fnuz) or int8.
        b: ``(K, N)``, ``a``'s dtype and device; any strides (``w.t()`` of an ``(N, K)``
            weight is the usual layout).
        scale_a, scale_b: float32 scales whose shapes name the recipe: one element each
            (tensor-wise), ``(M, 1)`` and ``(1, N)`` (row-wise), ``(M, K/128)`` and
            ``(K/128, ceil(N/128))`` (block-wise). ``None`` for both: unit scales
            (int8 only).
        bias: optional ``(N,)``, bfloat16/float16/float32, added after scaling.
        out_dtype: bfloat16 (default), float16 or float32; int32 for int8 inputs
            without scales or bias (``torch._int_mm``).
        out: optional ``(M, N)`` tensor of ``out_dtype`` to write into.
        backend: a backend name or priority list for this call only.

    Returns:
        ``out``, or a new ``(M, N)`` tensor of ``out_dtype``.

    Raises:
        TypeError, ValueError: bad input, naming the argument.
        hetero.DispatchError: no candidate can serve the call.
    """
    if native_scaled_gemm is not None and bias is None and out is None and backend is None \
            and (out_dtype is None or out_dtype is torch.int32 and scale_a is None
                 and scale_b is None):
        try:
            if not any(s is not None and s.requires_grad for s in (scale_a, scale_b)):
                result = native_scaled_gemm(a, b, scale_a, scale_b)
                if result is not None:
                    return result
        except Exception:  # noqa: BLE001 - the Python path below reports it, naming the argument
            pass
    key, args = prepare(a, b, scale_a, scale_b, bias, out_dtype, out, backend)
    (_decisions.get(key) or dispatch.resolve(key, args))(args)
    return args.out
