"""``hetero.varlen_attention``: attention over sequences of different lengths packed
into one batch, as serving engines call it (FlashAttention's ``flash_attn_varlen_func``,
PyTorch's ``varlen_attn``) — its argument record, dispatch traits, input checks and the
public function.

Shapes: ``q (Tq, Hq, D)``, ``k (Tk, Hkv, D)``, ``v (Tk, Hkv, Dv)`` packed along the
tokens; ``cu_seqlens_q``, ``cu_seqlens_k`` int32 ``(B + 1,)``: sequence ``i`` is rows
``cu[i]:cu[i + 1]``. Result ``(Tq, Hq, Dv)``. Query head ``h`` reads key/value head
``h // (Hq // Hkv)``.

The mask of one sequence with ``Sq`` queries and ``Sk`` keys: query ``i`` is aligned to
key ``p = i + Sk - Sq`` (bottom-right, as when the queries are the last tokens of the
sequence) and sees keys ``j`` with ``p - left <= j <= p + right`` for
``window = (left, right)`` (``-1``: unbounded); ``causal`` bounds ``right`` by 0.
``softcap > 0`` turns scores (times ``scale``) into ``softcap · tanh(score / softcap)``
before masking (Gemma 2). A query that sees no key gives zeros, as ``attention`` does.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ... import dispatch
from ...kernel import dispatch_traits
from .. import _checks

OP = "varlen_attention"
# gqa: Hq != Hkv; window: a bounded left or right; softcap; head_dim_v: Dv != D.
FEATURES = ("causal", "gqa", "window", "softcap", "head_dim_v")
BUCKET_DIMS = ()


class VarlenAttentionArgs(NamedTuple):
    """What a varlen_attention kernel receives.

    ``q (Tq, Hq, D)``, ``k (Tk, Hkv, D)``, ``v (Tk, Hkv, Dv)``: one dtype, any strides.
    ``cu_seqlens_q``, ``cu_seqlens_k``: int32 ``(B + 1,)``, non-decreasing from 0 to
    ``Tq`` / ``Tk`` (checked). ``max_seqlen_q``, ``max_seqlen_k``: the longest
    sequence's lengths (python ints, checked). ``out (Tq, Hq, Dv)``. ``scale``: a
    float; ``causal``; ``window``: ``(left, right)`` ints, ``-1`` unbounded;
    ``softcap``: a float, 0 = off. ``lse``: ``None`` or an ``(Hq, Tq)`` float32
    tensor (float64 for float64 inputs) that every kernel fills with each row's
    natural-log log-sum-exp (``+inf`` where a row sees no key), as PyTorch's
    ``varlen_attn`` returns it."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    cu_seqlens_q: torch.Tensor
    cu_seqlens_k: torch.Tensor
    max_seqlen_q: int
    max_seqlen_k: int
    out: torch.Tensor
    scale: float
    causal: bool = False
    window: tuple[int, int] = (-1, -1)
    softcap: float = 0.0
    lse: torch.Tensor | None = None


@dispatch_traits
class VarlenAttentionTraits(NamedTuple):
    """What dispatch knows about a ``varlen_attention`` call: dtype, head dims, and
    which features it uses."""

    op: str
    device: torch.device
    dtype: torch.dtype
    head_dim: int
    head_dim_v: int
    causal: bool
    gqa: bool
    window: bool
    softcap: bool
    align: int | None
    bucket: None = None

    LABELS = {"head_dim": "head dim", "head_dim_v": "value head dim"}

    @property
    def features(self) -> frozenset[str]:
        return frozenset(name for name, used in (
            ("causal", self.causal), ("gqa", self.gqa), ("window", self.window),
            ("softcap", self.softcap),
            ("head_dim_v", self.head_dim_v != self.head_dim)) if used)


# ------------------------------------------------------------ checks shared by the ops
def check_packed(t, name: str, layout: str) -> None:
    _checks.tensor(t, name)
    if t.dim() != 3:
        raise ValueError(f"{name}: expected 3 dims {layout}, got shape {tuple(t.shape)}")


def check_heads(q, k, v, kv_dims: tuple[int, int], k_name: str = "k", v_name: str = "v"
                ) -> tuple[int, int, int, int]:
    """``(Hq, Hkv, D, Dv)`` after checking that ``k``'s heads divide ``q``'s and the head
    dims agree; ``kv_dims``: where the heads and the head dim are in ``k``."""
    Hq, D = q.shape[-2], q.shape[-1]
    Hkv, Dk = k.shape[kv_dims[0]], k.shape[kv_dims[1]]
    if Hkv == 0 or Hq % Hkv:
        raise ValueError(f"{k_name}: {Hkv} key/value heads must divide q's {Hq} heads")
    if Dk != D:
        raise ValueError(f"{k_name}: head dim {Dk} must equal q's {D}")
    if v.shape[kv_dims[0]] != Hkv:
        raise ValueError(f"{v_name}: {v.shape[kv_dims[0]]} heads must equal {k_name}'s {Hkv}")
    if D == 0:
        raise ValueError("q: head dim must be at least 1")
    return Hq, Hkv, D, v.shape[-1]


def check_int32(t, name: str, shape: tuple, device: torch.device) -> None:
    _checks.tensor(t, name)
    if t.dtype is not torch.int32:
        raise TypeError(f"{name}: expected dtype int32, got {_checks.dtype_name(t.dtype)}")
    _checks.same_device(t, name, device, "q")
    if tuple(t.shape) != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {tuple(t.shape)}")


def check_cu_seqlens(cu, name: str, total: int, device: torch.device,
                     batch: int | None = None) -> list[int]:
    """The checked ``(B + 1,)`` offsets as a list: non-decreasing from 0 to ``total``."""
    _checks.tensor(cu, name)
    if cu.dim() != 1 or cu.shape[0] < 1:
        raise ValueError(f"{name}: expected shape (B + 1,), got {tuple(cu.shape)}")
    check_int32(cu, name, (cu.shape[0] if batch is None else batch + 1,), device)
    values = cu.tolist()
    if values[0] != 0:
        raise ValueError(f"{name}: must start at 0, got {values[0]}")
    if any(b < a for a, b in zip(values, values[1:])):
        raise ValueError(f"{name}: must be non-decreasing, got {values}")
    if values[-1] != total:
        raise ValueError(f"{name}: must end at the {total} packed rows, got {values[-1]}")
    return values


def check_mask_args(causal, scale, window, softcap, head_dim: int
                    ) -> tuple[float, tuple[int, int], float]:
    """``(scale, window, softcap)`` checked and normalised."""
    if not isinstance(causal, bool):
        raise TypeError(f"causal: expected bool, got {type(causal).__name__}")
    scale = 1.0 / math.sqrt(head_dim) if scale is None else _checks.real_scalar(scale, "scale")
    if not (isinstance(window, (tuple, list)) and len(window) == 2
            and all(isinstance(w, int) and not isinstance(w, bool) for w in window)):
        raise TypeError(f"window: expected a (left, right) pair of ints, got {window!r}")
    if any(w < -1 for w in window):
        raise ValueError(f"window: sizes are >= 0, or -1 for unbounded; got {tuple(window)}")
    softcap = _checks.real_scalar(softcap, "softcap")
    if not softcap >= 0 or math.isinf(softcap):
        raise ValueError(f"softcap: expected a finite value >= 0 (0 = off), got {softcap}")
    return scale, (int(window[0]), int(window[1])), softcap


def windowed(causal: bool, window: tuple[int, int]) -> bool:
    """Whether a window bounds anything causality does not."""
    return window[0] >= 0 or (window[1] >= 0 and not causal)


def check_max_seqlen(value, name: str, lengths: list[int]) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    longest = max(lengths, default=0)
    if value < longest:
        raise ValueError(f"{name}: {value} is below the longest sequence's {longest}")
    return value


# ------------------------------------------------------------------------ the call
_decisions = dispatch.decisions
_current_scope = dispatch.current_scope.get


def prepare(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal, scale,
            window, softcap, out, backend, lse=None) -> tuple[tuple, VarlenAttentionArgs]:
    """Validate and normalise; return the dispatch key and the kernel's record.
    ``lse``: ``None``, or ``True`` for a new ``(Hq, Tq)`` float32 log-sum-exp."""
    check_packed(q, "q", "(Tq, Hq, D)")
    check_packed(k, "k", "(Tk, Hkv, D)")
    check_packed(v, "v", "(Tk, Hkv, Dv)")
    dtype = _checks.float_dtype(q, "q")
    device = q.device
    for t, name in ((k, "k"), (v, "v")):
        _checks.same_dtype(t, name, dtype, "q")
        _checks.same_device(t, name, device, "q")
    if v.shape[0] != k.shape[0]:
        raise ValueError(f"v: {v.shape[0]} rows must equal k's {k.shape[0]}")
    Hq, Hkv, D, Dv = check_heads(q, k, v, (1, 2))
    starts_q = check_cu_seqlens(cu_seqlens_q, "cu_seqlens_q", q.shape[0], device)
    starts_k = check_cu_seqlens(cu_seqlens_k, "cu_seqlens_k", k.shape[0], device,
                                batch=len(starts_q) - 1)
    max_seqlen_q = check_max_seqlen(max_seqlen_q, "max_seqlen_q",
                                    [b - a for a, b in zip(starts_q, starts_q[1:])])
    max_seqlen_k = check_max_seqlen(max_seqlen_k, "max_seqlen_k",
                                    [b - a for a, b in zip(starts_k, starts_k[1:])])
    scale, window, softcap = check_mask_args(causal, scale, window, softcap, D)
    _checks.no_autograd(OP, q, k, v)
    out = _checks.output(out, (q.shape[0], Hq, Dv), dtype, device,
                         (("q", q), ("k", k), ("v", v)))
    if lse is not None:
        lse = torch.empty((Hq, q.shape[0]), dtype=_checks.compute_dtype(dtype)
                          if dtype is torch.float64 else torch.float32, device=device)
    if backend is not None and type(backend) is not str:
        backend = tuple(backend)
    align = _checks.alignment(q, k, v, out) if dispatch.wants_alignment[OP] else None
    key = (OP, device, dtype, D, Dv, causal, Hq != Hkv, windowed(causal, window),
           softcap > 0, align, None, backend, _current_scope())
    return key, VarlenAttentionArgs(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                    max_seqlen_k, out, scale, causal, window, softcap, lse)


def varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     cu_seqlens_q: torch.Tensor, cu_seqlens_k: torch.Tensor,
                     max_seqlen_q: int, max_seqlen_k: int, *, causal: bool = False,
                     scale: float | None = None, window: tuple[int, int] = (-1, -1),
                     softcap: float = 0.0, out: torch.Tensor | None = None,
                     backend: str | list[str] | None = None) -> torch.Tensor:
    """Attention over packed sequences of different lengths, on the best backend for
    the call.

    Args:
        q: ``(Tq, Hq, D)``, float32/float16/bfloat16 (float64 on ``reference``).
        k: ``(Tk, Hkv, D)`` with ``Hq % Hkv == 0``; ``q``'s dtype and device.
        v: ``(Tk, Hkv, Dv)``.
        cu_seqlens_q, cu_seqlens_k: int32 ``(B + 1,)``: sequence ``i`` is rows
            ``cu[i]:cu[i + 1]`` of ``q`` (and of ``k``, ``v``).
        max_seqlen_q, max_seqlen_k: at least the longest sequence's query / key count.
        causal: query ``i`` of a sequence sees keys ``j <= i + Sk - Sq``
            (bottom-right aligned per sequence).
        scale: multiplies ``q @ k^T``; default ``1 / sqrt(D)``.
        window: ``(left, right)``: query ``i`` (aligned to key ``p``) sees keys
            ``p - left <= j <= p + right``; ``-1`` = unbounded.
        softcap: ``> 0``: scores become ``softcap · tanh(scores / softcap)`` before
            masking; 0 = off.
        out: optional ``(Tq, Hq, Dv)`` tensor of ``q``'s dtype to write into.
        backend: a backend name or priority list for this call only.

    Returns:
        ``out``, or a new ``(Tq, Hq, Dv)`` tensor. Rows that see no key are zero.

    Raises:
        TypeError, ValueError: bad input, naming the argument.
        hetero.DispatchError: no candidate can serve the call.
    """
    key, args = prepare(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                        causal, scale, window, softcap, out, backend)
    (_decisions.get(key) or dispatch.resolve(key, args))(args)
    return args.out
