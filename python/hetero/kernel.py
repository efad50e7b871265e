"""What a kernel declares it supports, as data, and the call traits it is checked against.

One declaration (:class:`Support`) feeds every consumer: the dispatch decision, the
rejection reasons in :func:`hetero.explain`, the support matrix of ``hetero info`` and
(later) the conformance suite's parametrization. Whatever a kernel's ``predicate``
looks at must be part of the traits, because decisions are cached by traits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, NamedTuple

import torch

#: Features a call may use, per op. A kernel lists the ones it can serve.
GEMM_FEATURES = ("bias", "batch", "float32_out")
ATTENTION_FEATURES = ("causal", "gqa", "mask_bool", "mask_additive", "head_dim_v")


class GemmTraits(NamedTuple):
    """What dispatch knows about a ``gemm`` call. ``out_dtype``: ``None`` when it is
    ``dtype`` (the usual case). ``align``: the largest power of two
    (capped at 16) dividing every data pointer, in bytes — ``None`` (not computed)
    while no registered kernel of the op declares an alignment. ``bucket``:
    ``(M, N, K)`` rounded up to powers of two (:mod:`hetero.tuned`), ``None`` while
    the tuned table has no gemm entry."""

    op: str
    device: torch.device
    dtype: torch.dtype
    out_dtype: torch.dtype | None
    bias: bool
    batch: bool
    align: int | None
    bucket: tuple[int, int, int] | None = None

    @property
    def features(self) -> frozenset[str]:
        return frozenset(name for name, used in (
            ("bias", self.bias), ("batch", self.batch),
            ("float32_out", self.out_dtype not in (None, self.dtype))) if used)


class AttentionTraits(NamedTuple):
    """What dispatch knows about an ``attention`` call. ``mask`` is ``None``,
    ``"bool"`` or ``"additive"``; ``align`` as for :class:`GemmTraits`; ``bucket``:
    ``(Sq, Sk)`` rounded up to powers of two, ``None`` while the tuned table has no
    attention entry."""

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

    @property
    def features(self) -> frozenset[str]:
        return frozenset(name for name, used in (
            ("causal", self.causal), ("gqa", self.gqa),
            ("mask_bool", self.mask == "bool"),
            ("mask_additive", self.mask == "additive"),
            ("head_dim_v", self.head_dim_v != self.head_dim)) if used)


Traits = GemmTraits | AttentionTraits


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@dataclass(frozen=True)
class Support:
    """The envelope a kernel serves. Every field is checked by :meth:`reasons`.

    dtypes: input dtypes served.
    device_types: torch device types (``"cpu"``, ``"cuda"``...); ``None`` = any.
    features: op features served (see ``GEMM_FEATURES``, ``ATTENTION_FEATURES``).
    head_dims: inclusive ``(min, max)`` head dimension (attention only).
    head_dim_multiple: head dims (q/k and v) must be a multiple of this.
    alignment: bytes every data pointer must be aligned to.
    min_compute_capability: ``(major, minor)`` for CUDA devices.
    predicate: extra check for what data cannot say; returns reasons (empty = ok).
    """

    dtypes: frozenset[torch.dtype]
    device_types: frozenset[str] | None = None
    features: frozenset[str] = frozenset()
    head_dims: tuple[int, int] | None = None
    head_dim_multiple: int = 1
    alignment: int = 1
    min_compute_capability: tuple[int, int] | None = None
    predicate: Callable[[Traits], Iterable[str]] | None = None

    def reasons(self, traits: Traits) -> list[str]:
        """Why this envelope does not cover ``traits`` (empty list: it does)."""
        out = []
        device_type = traits.device.type
        if self.device_types is not None and device_type not in self.device_types:
            out.append(f"device type {device_type!r} not in {sorted(self.device_types)}")
        if traits.dtype not in self.dtypes:
            out.append(f"dtype {_dtype_name(traits.dtype)} not in "
                       f"{sorted(map(_dtype_name, self.dtypes))}")
        missing = traits.features - self.features
        if missing:
            out.append(f"feature{'s' if len(missing) > 1 else ''} "
                       f"{', '.join(sorted(missing))} not supported")
        if isinstance(traits, AttentionTraits):
            out.extend(self._head_dim_reasons(traits))
        if self.alignment > 1 and traits.align is not None and traits.align < self.alignment:
            out.append(f"data pointers aligned to {traits.align} bytes, "
                       f"kernel needs {self.alignment}")
        if self.min_compute_capability and device_type == "cuda":
            have = torch.cuda.get_device_capability(traits.device)
            if have < self.min_compute_capability:
                out.append(f"compute capability {have[0]}.{have[1]} below "
                           f"{self.min_compute_capability[0]}.{self.min_compute_capability[1]}")
        if self.predicate is not None and not out:
            out.extend(self.predicate(traits))
        return out

    def _head_dim_reasons(self, traits: AttentionTraits) -> Iterable[str]:
        for label, dim in (("head dim", traits.head_dim), ("value head dim", traits.head_dim_v)):
            if self.head_dims and not self.head_dims[0] <= dim <= self.head_dims[1]:
                yield f"{label} {dim} outside [{self.head_dims[0]}, {self.head_dims[1]}]"
            elif dim % self.head_dim_multiple:
                yield f"{label} {dim} not a multiple of {self.head_dim_multiple}"

    def describe(self) -> dict:
        """A JSON-friendly summary (for ``hetero info``)."""
        return {
            "dtypes": sorted(map(_dtype_name, self.dtypes)),
            "device_types": sorted(self.device_types) if self.device_types else "any",
            "features": sorted(self.features),
            **({"head_dims": list(self.head_dims)} if self.head_dims else {}),
            **({"head_dim_multiple": self.head_dim_multiple}
               if self.head_dim_multiple > 1 else {}),
            **({"alignment": self.alignment} if self.alignment > 1 else {}),
            **({"min_compute_capability": ".".join(map(str, self.min_compute_capability))}
               if self.min_compute_capability else {}),
            **({"predicate": " ".join((self.predicate.__doc__ or "yes").split())}
               if self.predicate else {}),
        }


@dataclass(frozen=True)
class Kernel:
    """One kernel of one backend for one op.

    ``fn`` takes the validated arguments and writes the result into ``out``:

    - gemm: ``fn(a, b, bias, alpha, beta, out)`` with ``a (*batch, M, K)``,
      ``b (*batch, K, N)`` (batch dims already broadcast, possibly stride 0),
      ``bias`` ``None`` or expanded to ``out``'s shape, python floats alpha/beta,
      ``out (*batch, M, N)``.
    - attention: ``fn(q, k, v, mask, causal, scale, out)`` with shapes as in
      :func:`hetero.attention`, ``mask`` ``None`` or expanded to ``(B, Hq, Sq, Sk)``,
      ``scale`` a python float.

    ``training`` (attention only, optional) is the pair ``(forward, backward)`` that
    autograd uses (``torch.ops.hetero.attention``, :func:`hetero.enable`):

    - ``forward(q, k, v, mask, causal, scale, out) -> lse`` computes as ``fn`` and
      returns ``lse (B, Hq, Sq)`` float32 (float64 for float64 inputs), the natural-log
      log-sum-exp of each row's scaled, masked scores, ``+inf`` for a row that sees no
      key;
    - ``backward(dout, q, k, v, out, lse, mask, causal, scale) -> (dq, dk, dv)`` in the
      inputs' dtypes (the mask gets no gradient).

    Every backend's ``lse`` follows that one convention, so a forward and a backward
    from different kernels still pair up.
    """

    op: str
    name: str
    fn: Callable = field(compare=False)
    support: Support = field(compare=False)
    backend: str = ""
    training: tuple[Callable, Callable] | None = field(default=None, compare=False)

    @property
    def qualname(self) -> str:
        """``backend.kernel`` — the name used in explain() and reports."""
        return f"{self.backend}.{self.name}"
