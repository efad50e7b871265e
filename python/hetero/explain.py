"""``hetero.explain``: which kernel a call would run, and why every other was rejected."""

from __future__ import annotations

from . import dispatch, registry, routed_explain
from .enable import routes
from .ops import registry as op_registry


def explain(op, *args, **kwargs) -> dispatch.Decision | routed_explain.RoutedCall:
    """The dispatch decision for ``op(*args, **kwargs)``, without running a kernel.

    ``op`` is an op's name (``hetero.list_ops()``) or its public function; the
    arguments are exactly those of the op (including ``backend=``). The decision is made
    afresh (not read from the cache) under the current scope and policy. ``print()`` it,
    or read ``.chosen``, ``.candidates`` (each with ``.reasons``), ``.fallback`` and
    ``.opt_in`` (backends outside the default order, such as simulators, that could
    serve the call when asked for by name). Bad input raises just as the op would.

    ``op`` may also be a PyTorch function :func:`hetero.enable` routes
    (``F.linear``, ``torch.matmul``, ``F.scaled_dot_product_attention``, ...; see
    :mod:`hetero.enable`): the result is then a
    :class:`~hetero.routed_explain.RoutedCall`, what enabling would do with that call on
    this thread (the routing on here, else ``enable()``'s defaults): which of hetero's
    operators take it and each one's decision, or why PyTorch computes it. On the native
    route the call runs with its routed operators answered by zeros, so it must
    be a call PyTorch accepts.

    >>> print(hetero.explain(torch.nn.functional.linear, x, w))
    """
    if not isinstance(op, str) and op in routes():
        return routed_explain.explain_call(op, *args, **kwargs)
    name = op if isinstance(op, str) else getattr(op, "__name__", repr(op))
    key, _ = op_registry.spec(name).bind(*args, **kwargs)
    traits, backend, scope = dispatch.split_key(key)
    decision = dispatch.decide(traits, backend, scope)
    if decision.source.startswith("the default order"):
        decision.opt_in = _opt_in(traits, {c.backend for c in decision.candidates})
    return decision


def _opt_in(traits, considered: set[str]) -> list[str]:
    """Available backends left out of the default order whose kernels serve ``traits``."""
    found = []
    for name, entry in sorted(registry.entries().items()):
        backend = entry.backend
        if name in considered or backend is None or backend.default or \
                backend.device_type not in (traits.device.type, "any") or \
                entry.reasons_unavailable():
            continue
        if any(not k.support.reasons(traits) for k in entry.kernels.get(traits.op, ())):
            found.append(name)
    return found
