"""``hetero.attention``: the call — its argument record, dispatch traits, input checks
and the public function.

``out = softmax(q @ k^T * scale + mask) @ v``, per (batch, query head), where query head
``h`` reads key/value head ``h // (Hq // Hkv)`` (grouped-query / multi-query attention).

Shapes: ``q (B, Hq, Sq, D)``, ``k (B, Hkv, Sk, D)``, ``v (B, Hkv, Sk, Dv)``, result
``(B, Hq, Sq, Dv)``. ``causal`` lets query ``i`` see keys ``j <= i + (Sk - Sq)``: the
mask is aligned bottom-right, as when decoding with a KV cache. A query row that can
see no key returns zeros, not NaN.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ... import dispatch, tuned
from ...kernel import Range, dispatch_traits
from .. import _checks

OP = "attention"
FEATURES = ("causal", "gqa", "mask_bool", "mask_additive", "head_dim_v")
# The tuned table's bucket: the independent problems (batch x query heads), the lengths and
# the head dim. Which kernel wins depends on all four: a few heads of a short decode step
# cost the call's overhead, many of them the kernel's speed.
BUCKET_DIMS = ("BH", "Sq", "Sk", "D")


class AttentionArgs(NamedTuple):
    """What an attention kernel receives.

    ``q (B, Hq, Sq, D)``, ``k (B, Hkv, Sk, D)``, ``v (B, Hkv, Sk, Dv)`` of one dtype,
    any strides, ``Hq % Hkv == 0``; ``out (B, Hq, Sq, Dv)`` in that dtype; ``scale`` a
    python float; ``mask`` ``None`` or expanded to ``(B, Hq, Sq, Sk)``, bool (``True`` =
    may attend) or additive; ``causal``: query ``i`` sees keys ``j <= i + Sk - Sq``.
    A row that sees no key is written as zeros.

    ``lse``: ``None``, or — only for a kernel with a ``backward`` — a ``(B, Hq, Sq)``
    float32 tensor (float64 for float64 inputs) to fill with the natural-log
    log-sum-exp of each row's scaled, masked scores, ``+inf`` for a row that sees no
    key. The backward, ``backward(args, dout) -> (dq, dk, dv)`` in the inputs' dtypes,
    receives the forward's record (``out`` and ``lse`` filled); the mask gets no
    gradient. Every backend's ``lse`` follows this one convention, so a forward and a
    backward from different kernels still pair up.
    """

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    out: torch.Tensor
    scale: float
    mask: torch.Tensor | None = None
    causal: bool = False
    lse: torch.Tensor | None = None


@dispatch_traits
class AttentionTraits(NamedTuple):
    """What dispatch knows about an ``attention`` call. ``mask`` is ``None``,
    ``"bool"`` or ``"additive"``; ``align`` as for gemm's traits; ``bucket``:
    ``(B * Hq, Sq, Sk, D)`` rounded up to powers of two, ``None`` while the tuned table
    has no attention entry; ``sizes``: ``(Sq, Sk)``, ``None`` while no kernel limits
    them."""

    SIZES = ("Sq", "Sk")

    op: str
    device: torch.device
    dtype: torch.dtype
    head_dim: int
    head_dim_v: int
    causal: bool
    gqa: bool
    mask: str | None
    align: int | None
    bucket: tuple[int, int] | None = None
    sizes: tuple[int, int] | None = None

    LABELS = {"head_dim": "head dim", "head_dim_v": "value head dim"}

    @property
    def features(self) -> frozenset[str]:
        return frozenset(name for name, used in (
            ("causal", self.causal), ("gqa", self.gqa),
            ("mask_bool", self.mask == "bool"),
            ("mask_additive", self.mask == "additive"),
            ("head_dim_v", self.head_dim_v != self.head_dim)) if used)


def head_dims(lowest: int, highest: int, multiple: int = 1) -> dict[str, Range]:
    """``Support.limits`` for a kernel serving head dims ``[lowest, highest]`` (q/k and
    v alike) that are multiples of ``multiple``."""
    allowed = Range(lowest, highest, multiple)
    return {"head_dim": allowed, "head_dim_v": allowed}


#: ``hetero_route::attention(q, k, v, causal, scale, attn_mask)``: the call without
#: ``out`` or backend served natively, ``None`` for any call it leaves to the Python path
#: (:func:`hetero.native_entries.attention_entry`, set at import).
native_attention = None

_decisions = dispatch.decisions  # the hot path reads the cache directly
_wants_alignment = dispatch.wants_alignment
_wants_bucket = dispatch.wants_bucket
_wants_sizes = dispatch.wants_sizes
_current_scope = dispatch.current_scope.get
_new_record = tuple.__new__  # a record without the NamedTuple's Python-level __new__


def prepare(q, k, v, causal, scale, attn_mask, out, backend) -> tuple[tuple, AttentionArgs]:
    """Validate and normalise; return the dispatch key and the kernel's record."""
    for t, name in ((q, "q"), (k, "k"), (v, "v")):
        _checks.tensor(t, name)
        if t.dim() != 4:
            layout = "(B, Hq, Sq, D)" if name == "q" else "(B, Hkv, Sk, D)"
            raise ValueError(f"{name}: expected 4 dims {layout}, got shape {tuple(t.shape)}")
    dtype = _checks.float_dtype(q, "q")
    device = q.device
    for t, name in ((k, "k"), (v, "v")):
        _checks.same_dtype(t, name, dtype, "q")
        _checks.same_device(t, name, device, "q")
    B, Hq, Sq, D = q.shape
    _, Hkv, Sk, _ = k.shape
    Dv = v.shape[3]
    if k.shape[0] != B or v.shape[0] != B:
        raise ValueError(f"k, v: batch sizes {k.shape[0]}, {v.shape[0]} must equal q's {B}")
    if k.shape[3] != D:
        raise ValueError(f"k: head dim {k.shape[3]} must equal q's {D}")
    if tuple(v.shape[1:3]) != (Hkv, Sk):
        raise ValueError(f"v: heads and length {tuple(v.shape[1:3])} must equal k's "
                         f"{(Hkv, Sk)}")
    if Hkv == 0 or Hq % Hkv:
        raise ValueError(f"k: {Hkv} key/value heads must divide q's {Hq} heads")
    if D == 0:
        raise ValueError("q: head dim must be at least 1")
    if not isinstance(causal, bool):
        raise TypeError(f"causal: expected bool, got {type(causal).__name__}")
    scale = 1.0 / math.sqrt(D) if scale is None else _checks.real_scalar(scale, "scale")
    mask_kind = None
    if attn_mask is not None:
        attn_mask, mask_kind = _check_mask(attn_mask, dtype, device, (B, Hq, Sq, Sk))
    _checks.no_autograd(OP, q, k, v, attn_mask)
    out = _checks.output(out, (B, Hq, Sq, Dv), dtype, device,
                         (("q", q), ("k", k), ("v", v), ("attn_mask", attn_mask)))
    if backend is not None and type(backend) is not str:
        backend = tuple(backend)
    align = _checks.alignment(q, k, v, attn_mask, out) if _wants_alignment[OP] else None
    bucket = tuned.bucket(B * Hq, Sq, Sk, D) if _wants_bucket[OP] else None
    sizes = (Sq, Sk) if _wants_sizes[OP] else None
    key = (OP, device, dtype, D, Dv, causal, Hq != Hkv, mask_kind, align, bucket, sizes,
           backend, _current_scope())
    return key, _new_record(AttentionArgs, (q, k, v, out, scale, attn_mask, causal, None))


def _check_mask(mask, dtype, device, full_shape):
    """The mask expanded to ``(B, Hq, Sq, Sk)``, and its kind."""
    _checks.tensor(mask, "attn_mask")
    if mask.dtype is torch.bool:
        kind = "bool"
    elif mask.dtype is dtype or mask.dtype is torch.float32:
        kind = "additive"
    else:
        raise TypeError(f"attn_mask: expected bool (True = may attend) or additive "
                        f"{_checks.dtype_name(dtype)}/float32, got "
                        f"{_checks.dtype_name(mask.dtype)}")
    _checks.same_device(mask, "attn_mask", device, "q")
    if mask.dim() > 4:
        raise ValueError(f"attn_mask: expected at most 4 dims, got {mask.dim()}")
    try:
        return mask.expand(*full_shape), kind
    except RuntimeError:
        raise ValueError(f"attn_mask: shape {tuple(mask.shape)} does not broadcast "
                         f"to (B, Hq, Sq, Sk) = {full_shape}") from None


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False,
              scale: float | None = None, attn_mask: torch.Tensor | None = None,
              out: torch.Tensor | None = None,
              backend: str | list[str] | None = None) -> torch.Tensor:
    """Scaled dot-product attention on the best backend for the call.

    Args:
        q: ``(B, Hq, Sq, D)``, float32/float16/bfloat16 (float64 on ``reference``).
        k: ``(B, Hkv, Sk, D)`` with ``Hq % Hkv == 0``; same dtype/device as ``q``.
        v: ``(B, Hkv, Sk, Dv)``.
        causal: query ``i`` sees keys ``j <= i + Sk - Sq`` (bottom-right aligned).
        scale: multiplies ``q @ k^T``; default ``1 / sqrt(D)``.
        attn_mask: broadcastable to ``(B, Hq, Sq, Sk)``; bool (``True`` = may attend)
            or additive (``q``'s dtype or float32). Combines with ``causal``.
        out: optional ``(B, Hq, Sq, Dv)`` tensor of ``q``'s dtype to write into.
        backend: a backend name or priority list for this call only.

    Returns:
        ``out``, or a new ``(B, Hq, Sq, Dv)`` tensor. Rows that see no key are zero.

    Raises:
        TypeError, ValueError: bad input, naming the argument.
        hetero.DispatchError: no candidate can serve the call (see ``.decision``).
    """
    if native_attention is not None and out is None and backend is None:
        try:
            if type(causal) is bool and (scale is None or type(scale) is float) and not (
                    q.requires_grad or k.requires_grad or v.requires_grad
                    or attn_mask is not None and attn_mask.requires_grad):
                result = native_attention(q, k, v, causal, scale, attn_mask)
                if result is not None:
                    return result
        except Exception:  # noqa: BLE001 - the Python path below reports it, naming the argument
            pass
    key, args = prepare(q, k, v, causal, scale, attn_mask, out, backend)
    (_decisions.get(key) or dispatch.resolve(key, args))(args)
    return args.out
