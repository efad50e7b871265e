"""The op registry: every op hetero serves is one :class:`OpSpec`, registered by name.

Dispatch, explain, the torch bridge, ``enable()``, the counters, the tuned table, the
conformance suite, the benchmark and the CLI all iterate this registry; nothing outside
an op's own folder (``hetero/ops/<name>/``) names an op. Adding an op is one new folder
— or a module of your own — that builds an :class:`OpSpec` and calls
:func:`register_op`; backends then register kernels for it by name.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

from ._checks import FLOAT_DTYPES


@dataclass(frozen=True)
class OpSpec:
    """Everything hetero needs to know about one op.

    The call:
        name: the op's name (``backend=`` kernels register under it).
        function: the public function, e.g. :func:`hetero.gemm`. By convention it takes
            keyword arguments ``out=None`` and ``backend=None``.
        record: the argument record its kernels receive: a ``NamedTuple`` with an
            ``out`` field, whose later fields default to "off".
        traits: what dispatch knows about a call (a :func:`hetero.kernel.dispatch_traits`
            ``NamedTuple``); decisions are cached by them.
        prepare: ``prepare(*function's parameters in order) -> (key, record)``: checks
            the input (raising ``TypeError``/``ValueError`` naming the argument),
            allocates ``out`` when not given, and builds the dispatch key
            ``traits.key(backend, scope)``.
        features: the optional features a call may use (``traits.features``); kernels
            declare the ones they serve.
        bucket_dims: names of the sizes the tuned table buckets a call by (the traits'
            ``bucket`` field holds them rounded up to powers of two).
        dtypes: the input dtypes the op takes (its traits' ``dtype``); the
            ``reference`` backend serves them all. Default: the float dtypes.

    Numbers:
        reference: ``reference(record, compute_dtype) -> result`` in ``compute_dtype``,
            with plain torch: the oracle every kernel is checked against.
        error_bound: ``error_bound(record, exact) -> bound`` (a number or a tensor like
            ``exact``) on ``|result - exact|`` for a correct kernel, where ``exact`` is
            the float64 reference.
        flops, min_bytes: ``f(record) -> float``: the work and the least memory traffic
            of a call, for counters and rooflines.

    Optional parts, each read by one consumer:
        reference_kernel: the ``reference`` backend's kernel (default: ``out`` filled
            from ``reference`` in float32, float64 for float64 inputs);
            reference_backward: its backward.
        torch_kernels: PyTorch's own kernels for the op (``hetero.Kernel`` objects with their
            support), which the ``torch`` backend serves.
        conformance: a :class:`hetero.conformance.ConformanceSpec` (cases and inputs).
        bench: a :class:`hetero.bench.BenchSpec` (benchmark cases and work).
        routes: ``{torch function: hetero.routing.Route}`` (or any object whose
            ``items()`` gives those pairs when :func:`hetero.enable` asks): the PyTorch
            calls ``enable()`` routes to this op.
        cli: a :class:`hetero.cli.ExplainCli`: ``hetero explain OP``'s options.
        sharding: ``{torch operator overload: strategies}``: how the op's torch
            operators shard over a DTensor mesh dimension (``register_sharding``'s
            form), registered by :mod:`hetero.distributed`. Without it, DTensor calls
            stay with PyTorch.
    """

    name: str
    function: Callable
    record: type
    traits: type
    prepare: Callable
    reference: Callable
    error_bound: Callable
    flops: Callable
    min_bytes: Callable
    features: tuple[str, ...] = ()
    bucket_dims: tuple[str, ...] = ()
    dtypes: tuple = FLOAT_DTYPES
    reference_kernel: Callable | None = None
    reference_backward: Callable | None = None
    torch_kernels: tuple = ()
    conformance: Any = None
    bench: Any = None
    routes: Any = None
    cli: Any = None
    sharding: Any = None

    def __post_init__(self):
        if not self.name.isidentifier():
            raise ValueError(f"name: an op name must be an identifier, got {self.name!r}")
        if "out" not in getattr(self.record, "_fields", ()):
            raise TypeError(f"record: expected a NamedTuple with an 'out' field, got "
                            f"{self.record!r}")
        if getattr(self.traits, "from_key", None) is None:
            raise TypeError(f"traits: {self.traits!r} is not decorated with "
                            f"hetero.kernel.dispatch_traits")

    def bind(self, *args, **kwargs) -> tuple[tuple, Any]:
        """``prepare`` for a call written as the public function's (``backend=``
        included): ``(key, record)``. Bad input raises as the function would."""
        bound = inspect.signature(self.function).bind(*args, **kwargs)
        bound.apply_defaults()
        return self.prepare(*bound.arguments.values())


_ops: dict[str, OpSpec] = {}
_listeners: list[Callable[[], None]] = []


def on_change(callback: Callable[[], None]) -> None:
    """Call ``callback()`` whenever an op is registered or removed."""
    _listeners.append(callback)


def register_op(spec: OpSpec) -> OpSpec:
    """Make ``spec`` an op of hetero. Backends registered afterwards (and the built-in
    ``reference`` backend, at once) may serve it. Returns ``spec``."""
    if not isinstance(spec, OpSpec):
        raise TypeError(f"spec: expected a hetero.OpSpec, got {type(spec).__name__}")
    if spec.name in _ops:
        raise ValueError(f"spec: an op named {spec.name!r} is already registered")
    _ops[spec.name] = spec
    for callback in _listeners:
        callback()
    return spec


def unregister_op(name: str) -> None:
    """Remove the op registered as ``name``."""
    if _ops.pop(name, None) is None:
        raise ValueError(f"name: no op named {name!r} is registered")
    for callback in _listeners:
        callback()


def list_ops() -> list[str]:
    """The registered ops' names, in registration order."""
    return list(_ops)


def specs() -> list[OpSpec]:
    """The registered ops' specs, in registration order."""
    return list(_ops.values())


def get(name: str) -> OpSpec | None:
    """The spec of op ``name``, or ``None``."""
    return _ops.get(name)


def spec(name: str) -> OpSpec:
    """The spec of op ``name``; ``ValueError`` listing the ops if there is none."""
    found = _ops.get(name)
    if found is None:
        raise ValueError(f"op: expected one of {list(_ops)}, got {name!r}")
    return found
