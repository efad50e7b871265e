"""``hetero.explain``: which kernel a call would run, and why every other was rejected."""

from __future__ import annotations

import inspect

from . import dispatch
from .ops.attention import _prepare as _prepare_attention
from .ops.attention import attention
from .ops.gemm import _prepare as _prepare_gemm
from .ops.gemm import gemm

_OPS = {"gemm": (gemm, _prepare_gemm), "attention": (attention, _prepare_attention)}


def explain(op, *args, **kwargs) -> dispatch.Decision:
    """The dispatch decision for ``op(*args, **kwargs)``, without running a kernel.

    ``op`` is ``"gemm"``, ``"attention"`` or the function itself; the arguments are
    exactly those of the op (including ``backend=``). The decision is made afresh (not
    read from the cache) under the current scope and policy. ``print()`` it, or read
    ``.chosen``, ``.candidates`` (each with ``.reasons``) and ``.fallback``.
    Bad input raises just as the op would.
    """
    name = op if isinstance(op, str) else getattr(op, "__name__", repr(op))
    if name not in _OPS:
        raise ValueError(f"op: expected one of {sorted(_OPS)}, got {op!r}")
    public, prepare = _OPS[name]
    bound = inspect.signature(public).bind(*args, **kwargs)
    bound.apply_defaults()
    key, _ = prepare(*bound.arguments.values())
    traits = dispatch.TRAITS_BY_OP[name]._make(key[:-2])
    return dispatch.decide(traits, key[-2], key[-1])
