"""What a kernel declares it supports, as data, and the call traits it is checked against.

One declaration (:class:`Support`) feeds every consumer: the dispatch decision, the
rejection reasons in :func:`hetero.explain`, the support matrix of ``hetero info`` and
the conformance suite's verdict. Whatever a kernel's ``predicate`` looks at must be part
of the traits, because decisions are cached by traits.

Each op's traits are a ``NamedTuple`` made a dispatch key by :func:`dispatch_traits`:
its first field is ``op``; it has ``device``, ``dtype``, ``align`` (pointer alignment in
bytes, ``None`` while no kernel of the op declares one) and ``bucket`` (the tuned
table's shape bucket, ``None`` while the table has no entry for the op) fields; a
``features`` property names the optional features the call uses; numeric fields may be
limited by a :class:`Range` in a kernel's ``Support.limits``, and a ``LABELS`` class
attribute may give them readable names for the reasons.

An op whose kernels may limit the call's sizes (gemm's ``K``, attention's ``Sk``) names
them in a ``SIZES`` class attribute and has a ``sizes`` field: the call's sizes in that
order, filled only while some registered kernel of the op declares a limit on one of
them (``None`` otherwise, so that decisions stay cached per shape class, not per shape).
A size limit is declared like any other: ``limits={"K": Range(1, 65536)}``; a kernel's
``predicate`` sees ``traits.sizes`` whenever any kernel of its op declares one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

import torch


def dispatch_traits(cls):
    """Class decorator for an op's traits ``NamedTuple``: checks the layout and adds

    - ``traits.key(backend, scope)``: the flat dispatch key
      ``(op, *other trait fields, backend, scope)`` (flat, so the hot path can build it
      without making a traits object);
    - ``Traits.from_key(key)``: ``(traits, backend, scope)`` back from such a key.
    """
    fields = getattr(cls, "_fields", ("",))
    if fields[0] != "op" or not {"device", "dtype", "align", "bucket"} <= set(fields):
        raise TypeError(f"{cls.__name__}: dispatch traits are a NamedTuple whose first "
                        f"field is 'op', with 'device', 'dtype', 'align' and 'bucket' fields")
    if not isinstance(getattr(cls, "features", None), property):
        raise TypeError(f"{cls.__name__}: dispatch traits need a 'features' property")
    if ("sizes" in fields) != bool(getattr(cls, "SIZES", ())):
        raise TypeError(f"{cls.__name__}: a 'sizes' field and a SIZES class attribute "
                        f"(the names of the sizes) come together")
    cls.key = lambda self, backend, scope: (*self, backend, scope)
    cls.from_key = classmethod(lambda c, key: (c._make(key[:-2]), key[-2], key[-1]))
    return cls


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def limit_names(traits_type) -> tuple[str, ...]:
    """The names a ``Support.limits`` may use for an op with these traits: its trait
    fields and its sizes (``SIZES``)."""
    return (*traits_type._fields[1:], *getattr(traits_type, "SIZES", ()))


def limited_value(traits, name: str) -> int | None:
    """The value of trait or size ``name`` for a call (``None``: the call's sizes are
    not in its traits, because no kernel of the op limits them)."""
    sizes = getattr(traits, "SIZES", ())
    if name in sizes:
        return None if traits.sizes is None else traits.sizes[sizes.index(name)]
    return getattr(traits, name)


@dataclass(frozen=True)
class Range:
    """Inclusive bounds and a required multiple for one numeric trait (``None``: no
    bound). ``Range(1, 256)``, ``Range(64, 128, multiple=64)``."""

    min: int | None = None
    max: int | None = None
    multiple: int = 1

    def reasons(self, label: str, value: int) -> list[str]:
        if (self.min is not None and value < self.min) or \
                (self.max is not None and value > self.max):
            return [f"{label} {value} outside [{self.min}, {self.max}]"]
        if value % self.multiple:
            return [f"{label} {value} not a multiple of {self.multiple}"]
        return []

    def allows(self, value: int) -> bool:
        return not self.reasons("", value)

    def ends(self) -> tuple[int | None, int | None]:
        """The smallest and largest allowed values (``None``: unbounded, or nothing
        allowed at that end)."""
        step = self.multiple
        low = None if self.min is None else -(-self.min // step) * step
        high = None if self.max is None else self.max // step * step
        if low is not None and high is not None and low > high:
            return None, None
        return low, high

    def nearest(self, value: int) -> int | None:
        """The allowed value closest to ``value`` (the lower on a tie), or ``None``
        when the range allows nothing."""
        low, high = self.ends()
        below = value // self.multiple * self.multiple
        picks = [v for v in (below, below + self.multiple, low, high)
                 if v is not None and self.allows(v)]
        return min(picks, key=lambda v: (abs(v - value), v)) if picks else None

    def describe(self) -> str:
        text = f"[{self.min}, {self.max}]"
        return text + (f", multiple of {self.multiple}" if self.multiple > 1 else "")


@dataclass(frozen=True)
class Support:
    """The envelope a kernel serves. Every field is checked by :meth:`reasons`.

    dtypes: input dtypes served.
    device_types: torch device types (``"cpu"``, ``"cuda"``...); ``None`` = any.
    features: the op's optional features served (``hetero.ops.spec(op).features``
        lists them).
    limits: ``{name: Range}`` for numeric traits of the op (attention: ``head_dim``,
        ``head_dim_v``) and for its sizes (gemm: ``M``, ``N``, ``K``; attention:
        ``Sq``, ``Sk``); a refusal names the limit.
    alignment: bytes every data pointer must be aligned to.
    min_compute_capability: ``(major, minor)`` for CUDA devices.
    predicate: extra check for what data cannot say; returns reasons (empty = ok). Its
        docstring's first line is what ``hetero info`` shows.
    """

    dtypes: frozenset[torch.dtype]
    device_types: frozenset[str] | None = None
    features: frozenset[str] = frozenset()
    limits: Mapping[str, Range] = field(default_factory=dict)
    alignment: int = 1
    min_compute_capability: tuple[int, int] | None = None
    predicate: Callable[[tuple], Iterable[str]] | None = None

    def reasons(self, traits) -> list[str]:
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
        labels = getattr(traits, "LABELS", {})
        for name, allowed in self.limits.items():
            value = limited_value(traits, name)
            if value is not None:
                out.extend(allowed.reasons(labels.get(name, name), value))
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

    def declaration_errors(self, op) -> list[str]:
        """What is wrong with this declaration for ``op`` (an :class:`~hetero.ops.OpSpec`):
        unknown features, limits on traits the op does not have or that are not
        numbers. Checked when a backend registers."""
        errors = []
        unknown = self.features - set(op.features)
        if unknown:
            errors.append(f"unknown {op.name} feature(s) {sorted(unknown)} (the op has "
                          f"{list(op.features)})")
        for name, allowed in self.limits.items():
            if name not in limit_names(op.traits) or name == "op":
                errors.append(f"limit on {name!r}, which is not a trait or size of "
                              f"{op.name} (those: {list(limit_names(op.traits))})")
            elif not isinstance(allowed, Range):
                errors.append(f"limit on {name!r} is a {type(allowed).__name__}, "
                              f"expected hetero.Range")
        return errors

    def limits_sizes(self, traits_type) -> bool:
        """Whether this declaration limits a size of the op (then calls carry their
        sizes in their traits)."""
        return any(name in getattr(traits_type, "SIZES", ()) for name in self.limits)

    def describe(self) -> dict:
        """A JSON-friendly summary (for ``hetero info``)."""
        return {
            "dtypes": sorted(map(_dtype_name, self.dtypes)),
            "device_types": sorted(self.device_types) if self.device_types else "any",
            "features": sorted(self.features),
            **({"limits": {n: r.describe() for n, r in self.limits.items()}}
               if self.limits else {}),
            **({"alignment": self.alignment} if self.alignment > 1 else {}),
            **({"min_compute_capability": ".".join(map(str, self.min_compute_capability))}
               if self.min_compute_capability else {}),
            **({"predicate": " ".join((self.predicate.__doc__ or "yes").split())}
               if self.predicate else {}),
        }


@dataclass(frozen=True)
class Kernel:
    """One kernel of one backend for one op.

    ``fn(args)`` takes the op's argument record (``hetero.ops.spec(op).record``, e.g.
    :class:`hetero.ops.gemm.GemmArgs`), validated and normalised by the op, and writes
    the result into ``args.out``. Read the record by field name: later fields are added
    with an "off" default, so a kernel that ignores them still means what it meant.

    ``backward`` (optional) is the op's backward kernel paired with this forward, used by
    autograd (``torch.ops.hetero.*``, :func:`hetero.enable`): ``backward(args, grad_out)
    -> gradients of the record's differentiable inputs``. A kernel with a backward fills
    the record's saved-for-backward outputs when they are given (attention: ``args.lse``).
    The op's record documents both.
    """

    op: str
    name: str
    fn: Callable = field(compare=False)
    support: Support = field(compare=False)
    backend: str = ""
    backward: Callable | None = field(default=None, compare=False)

    @property
    def qualname(self) -> str:
        """``backend.kernel`` — the name used in explain() and reports."""
        return f"{self.backend}.{self.name}"
