"""``hetero.explain``: which kernel a call would run, and why every other was rejected."""

from __future__ import annotations

from . import dispatch
from .ops import registry as op_registry


def explain(op, *args, **kwargs) -> dispatch.Decision:
    """The dispatch decision for ``op(*args, **kwargs)``, without running a kernel.

    ``op`` is an op's name (``hetero.list_ops()``) or its public function; the
    arguments are exactly those of the op (including ``backend=``). The decision is made
    afresh (not read from the cache) under the current scope and policy. ``print()`` it,
    or read ``.chosen``, ``.candidates`` (each with ``.reasons``) and ``.fallback``.
    Bad input raises just as the op would.
    """
    name = op if isinstance(op, str) else getattr(op, "__name__", repr(op))
    key, _ = op_registry.spec(name).bind(*args, **kwargs)
    return dispatch.decide(*dispatch.split_key(key))
