"""Choosing a kernel for a call, explaining the choice, and caching it.

Candidate order, first match wins:

1. ``backend=`` on the call,
2. the innermost ``with hetero.use(...)``,
3. ``HETERO_BACKENDS``,
4. the tuned table (:mod:`hetero.tuned`, measured on this machine by self-calibration or
   ``hetero tune``): its kernel for the call's device, dtype and shape bucket, when that
   kernel can serve the call. A call whose bucket has no entry yet is measured first
   (:mod:`hetero.calibration`), unless ``HETERO_CALIBRATE=off``,
5. the default order for the tensors' device type (backends of that device type by
   priority, then ``reference``).

A list given by 1–3 is exclusive — an explicitly requested backend that cannot serve the
call raises with every reason — unless it contains ``"*"``, which expands to the default
order at that position. When the first candidate backend is rejected and a later one
serves the call, that is a *fallback*, handled by the policy: ``warn`` (once per
reason), ``error`` (raise :class:`~hetero.errors.FallbackError`) or ``silent``.

Decisions are cached by the flat key ``(op, *trait fields, backend=, scope)`` (see
:func:`hetero.kernel.dispatch_traits`), so the hot path is one dict lookup in
:data:`decisions`. Anything that can change a decision (backends, ops, policy,
environment, tuned table) clears the cache.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

import torch

from . import env, fingerprint, registry, tuned
from .decision import Candidate, Decision
from .errors import DispatchError, FallbackError, HeteroConfigWarning, HeteroFallbackWarning
from .kernel import Kernel
from .ops import registry as ops

REFERENCE = "reference"


class Scope(NamedTuple):
    """What a ``with hetero.use(...)`` block sets; ``None`` fields inherit. ``training``:
    the calls also run their backward (set by :func:`training`, not by users).
    ``native``: the native route serves the calls (set by :func:`served_natively`)."""

    backends: tuple[str, ...] | None
    policy: str | None
    training: bool = False
    native: bool = False


current_scope: ContextVar[Scope | None] = ContextVar("hetero_scope", default=None)
#: Callables run when every cached decision is cleared (the native route's cache).
cache_listeners: list = []
#: Callables ``listener(scope_id(scope))`` run when a thread enters or leaves a scope.
scope_listeners: list = []
_scope_ids: dict = {None: 0}


def scope_id(scope: Scope | None) -> int:
    """A small integer standing for ``scope`` (0: none), for native decision caches."""
    found = _scope_ids.get(scope)
    if found is None:
        found = _scope_ids[scope] = len(_scope_ids)
    return found


def enter_scope(scope: Scope | None):
    """Make ``scope`` this context's (as :func:`use` does); returns the token for
    :func:`leave_scope`."""
    token = current_scope.set(scope)
    for listener in scope_listeners:
        listener(scope_id(scope))
    return token


def leave_scope(token) -> None:
    """Undo :func:`enter_scope`."""
    current_scope.reset(token)
    for listener in scope_listeners:
        listener(scope_id(current_scope.get()))

#: key -> kernel.fn: the hot path's only lookup (an op's function reads it directly).
decisions: dict[tuple, object] = {}
_warned: set[str] = set()
_policy_override: str | None = None
#: op -> whether its key carries the pointer alignment (``align``). Computing it costs
#: ~1 us a call, so only where some registered kernel declares an alignment (True until
#: the backends are first discovered).
wants_alignment: dict[str, bool] = {}
#: op -> whether its key carries the shape ``bucket``: where the tuned table has entries
#: or calibration may add some.
wants_bucket: dict[str, bool] = {}
#: op -> whether its key carries the call's sizes: where some kernel limits them.
wants_sizes: dict[str, bool] = {}
_tuned: tuned.Table | None = None
#: Why the table found at start-up is not used (another machine's), or None.
tuned_ignored: str | None = None
#: Set by :mod:`hetero.calibration`: ``calibrator(traits, kernels, record, training,
#: native) -> Entry or None`` measures the kernels that can serve a call on its record
#: (with ``training``, forward and backward together; with ``native``, as the native
#: route serves them) and adds the fastest correct one to the tuned table.
calibrator = None


def split_key(key: tuple):
    """``(traits, backend, scope)`` of a dispatch key (its op's ``Traits.from_key``)."""
    return ops.spec(key[0]).traits.from_key(key)


# ---------------------------------------------------------------- policy and scope
def fallback_policy() -> str:
    """The policy in force for this context: ``warn``, ``error`` or ``silent``."""
    return _policy_in(current_scope.get())


def _policy_in(scope: Scope | None) -> str:
    if scope is not None and scope.policy is not None:
        return scope.policy
    return _policy_override or env.settings().fallback


def _check_policy(policy: str) -> str:
    if policy not in env.FALLBACK_POLICIES:
        raise ValueError(f"policy: expected one of {env.FALLBACK_POLICIES}, got {policy!r}")
    return policy


def set_fallback_policy(policy: str | None) -> str | None:
    """Set the process-wide fallback policy (``None`` returns to the environment's);
    returns the previous override."""
    global _policy_override
    previous, _policy_override = _policy_override, (
        None if policy is None else _check_policy(policy))
    clear_cache()
    return previous


def _check_backend_names(names: Sequence[str], argument: str) -> tuple[str, ...]:
    if isinstance(names, str):
        names = (names,)
    names = tuple(names)
    known = registry.entries()
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"{argument}: backend names must be str, got {name!r}")
        if name != "*" and name not in known:
            registry.require(name, argument)
    return names


@contextmanager
def use(*backends: str, policy: str | None = None) -> Iterator[None]:
    """Within the block, try ``backends`` in this order (exclusive unless ``"*"`` is
    among them) and/or apply a fallback ``policy``. Scopes nest; what an inner scope
    leaves out it inherits. Context-local: threads and asyncio tasks see their own.

    >>> with hetero.use("cpu", "*", policy="error"):
    ...     y = hetero.gemm(a, b)
    """
    outer = current_scope.get() or Scope(None, None)
    scope = outer._replace(
        backends=_check_backend_names(backends, "use") if backends else outer.backends,
        policy=_check_policy(policy) if policy is not None else outer.policy)
    token = enter_scope(scope)
    try:
        yield
    finally:
        leave_scope(token)


@contextmanager
def served_natively() -> Iterator[None]:
    """Within the block, calls are decided as calls the native route serves
    (:mod:`hetero.native_route`): by the tuned table's entries measured so
    (``tuned.natively(op)``), each candidate at the route's per-call cost; a table
    without them (``hetero tune``'s) still decides by its plain entries."""
    with _scope_marked(native=True):
        yield


@contextmanager
def training() -> Iterator[None]:
    """Within the block, calls are decided as calls whose backward runs too (autograd
    records them): for an op whose kernels bring their own backward, the tuned table's
    measurement of forward and backward together (``tuned.with_backward(op)``) decides,
    so a kernel with a fast forward but a slow backward does not win a training step."""
    with _scope_marked(training=True):
        yield


@contextmanager
def _scope_marked(**marks: bool) -> Iterator[None]:
    """The current scope with ``marks`` (``Scope`` fields) set, for the block."""
    outer = current_scope.get() or Scope(None, None)
    token = enter_scope(outer._replace(**marks))
    try:
        yield
    finally:
        leave_scope(token)


# ---------------------------------------------------------------- deciding
def default_order(device_type: str) -> list[str]:
    """Backends serving ``device_type`` (or any device) by default, best first,
    ``reference`` last."""
    ranked = sorted(
        (e for e in registry.entries().values()
         if e.backend is not None and e.name != REFERENCE and e.backend.default
         and e.backend.device_type in (device_type, "any")),
        key=lambda e: (-e.backend.priority, e.name))
    return [e.name for e in ranked] + [REFERENCE]


def _requested(backend, scope: Scope | None) -> tuple[tuple[str, ...], str]:
    """The backend names asked for (``("*",)`` when none were) and who asked."""
    if backend is not None:
        return _check_backend_names(backend, "backend"), "backend= argument"
    if scope is not None and scope.backends is not None:
        return scope.backends, "hetero.use()"
    if env.settings().backends is not None:
        return env.settings().backends, "HETERO_BACKENDS"
    return ("*",), "the default order"


def _order(traits, backend, scope: Scope | None) -> tuple[list[str], str, bool]:
    names, source = _requested(backend, scope)
    if source == "the default order":
        source += f" for {traits.device.type}"
    order: list[str] = []
    for name in names:
        for expanded in (default_order(traits.device.type) if name == "*" else [name]):
            if expanded not in order:
                order.append(expanded)
    return order, source, "*" not in names


def _candidates(traits, name: str) -> list[Candidate]:
    entry = registry.get(name)
    if entry is None:
        return [Candidate(name, None, [registry.unknown_name(name)])]
    unavailable = entry.reasons_unavailable()
    if unavailable:
        return [Candidate(name, None, [f"unavailable: {r}" for r in unavailable])]
    kernels = entry.kernels.get(traits.op, [])
    if not kernels:
        return [Candidate(name, None, [f"provides no {traits.op} kernel"])]
    out = []
    for kernel in kernels:
        try:
            reasons = kernel.support.reasons(traits)
        except Exception as exc:
            reasons = [f"support check raised {type(exc).__name__}: {exc}"]
        out.append(Candidate(name, kernel, reasons))
    return out


def decide(traits, backend=None, scope: Scope | None = None, record=None) -> Decision:
    """The full decision for ``traits`` (not cached, never raises for a failed choice).
    With the call's ``record``, a bucket the tuned table has no entry for is calibrated
    first (when calibration is on)."""
    order, source, exclusive = _order(traits, backend, scope)
    candidates = [c for name in order for c in _candidates(traits, name)]
    chosen = next((c.kernel for c in candidates if not c.reasons), None)
    entry, note = None, None
    if _requested(backend, scope)[0] != ("*",):
        pass  # a named backend is obeyed, measured or not
    elif _tuned is None:
        note = None if tuned_ignored is None else f"not used ({tuned_ignored})"
    elif traits.bucket is not None:
        servable = [c.kernel for c in candidates if not c.reasons]
        # Training calls of an op whose kernels carry their own backward are measured
        # forward and backward together.
        training = scope is not None and scope.training and \
            any(k.backward is not None for k in servable)
        native = scope is not None and scope.native and not training
        table_op = tuned.with_backward(traits.op) if training else \
            tuned.natively(traits.op) if native else traits.op
        lookup = partial(_tuned.lookup, tuned.device_name(traits.device),
                         dtype=str(traits.dtype).removeprefix("torch."), bucket=traits.bucket)
        entry = lookup(table_op)
        if entry is None and record is not None and calibrating():
            entry = calibrator(traits, servable, record, training, native)
        if entry is None and native:
            entry = lookup(traits.op)
        if entry is not None:
            chosen = next((c.kernel for c in candidates if not c.reasons
                           and c.kernel.qualname == entry.kernel), chosen)
        else:
            note = (f"{_tuned.path or 'in memory'} has no measurement for "
                    f"{tuned.bucket_label(traits.op, traits.bucket)} yet"
                    + ("; the first call measures it" if calibrating() else ""))
    return Decision(traits, source, exclusive, _policy_in(scope), candidates, chosen,
                    entry, _tuned.path if entry is not None else None, note)


def _why_skipped(decision: Decision, served_by: str | None) -> str:
    """The reasons of (at most three) rejected candidates ahead of ``served_by``."""
    skipped = [c for c in decision.candidates if c.backend != served_by and c.reasons][:3]
    return "; ".join(f"{c.label}: {', '.join(c.reasons)}" for c in skipped)


def _enforce(decision: Decision, fallback: bool, served_by: str, why: str) -> None:
    """Apply the fallback policy to a decision whose call runs on ``served_by``."""
    if not fallback or decision.policy == "silent":
        return
    if decision.policy == "error":
        raise FallbackError(decision)
    message = (f"hetero: {decision.traits.op} on {decision.traits.device.type} "
               f"({str(decision.traits.dtype).removeprefix('torch.')}) runs on "
               f"{served_by} because {why} (hetero.explain() tells more; "
               f"HETERO_FALLBACK=silent hides this)")
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, HeteroFallbackWarning, stacklevel=4)


def resolve(key: tuple, record=None):
    """Cache miss: decide for ``key`` (calibrating its bucket on ``record`` if it has not
    been measured), apply the policy and cache the kernel function."""
    return resolve_kernel(key, record).fn


def resolve_kernel(key: tuple, record=None) -> Kernel:
    """:func:`resolve`, returning the chosen kernel (its function cached as resolve's)."""
    decision = decide(*split_key(key), record)
    if decision.chosen is None:
        raise DispatchError(decision)
    _enforce(decision, decision.fallback, decision.chosen.qualname,
             _why_skipped(decision, decision.chosen.backend))
    decisions[key] = decision.chosen.fn
    return decision.chosen


# ---------------------------------------------------------------- the torch bridge
#: key -> ``(kernel, None)`` or ``(None, why PyTorch serves the call)``, for the torch
#: ops (``torch.ops.hetero.*``).
bridge_decisions: dict[tuple, tuple[Kernel | None, str | None]] = {}
#: For :func:`hetero.enable`: a routed PyTorch call's signature (function, arguments'
#: types, shapes, strides, dtypes, devices, grad flags, scope) -> how it was counted when
#: PyTorch computed it; such a call then skips the routing.
passthrough: dict[tuple, tuple] = {}


def resolve_bridge(key: tuple, record=None) -> tuple[Kernel | None, str | None]:
    """Like :func:`resolve`, for the torch ops (``torch.ops.hetero.*``, used by
    :func:`hetero.enable`), whose last resort is PyTorch itself rather than the
    reference backend: ``reference`` serves a bridge call only when asked for by name
    (``backend=``, ``hetero.use``, ``HETERO_BACKENDS``). Returns ``(kernel, why the
    backends ahead of it were skipped, or None)``, or ``(None, reason)`` when PyTorch
    should compute the call. The fallback policy applies as for :func:`resolve`; an
    exclusive order that cannot serve the call raises
    :class:`~hetero.errors.DispatchError`."""
    traits, backend, scope = split_key(key)
    decision = decide(traits, backend, scope, record)
    chosen = decision.chosen
    if chosen is not None and chosen.backend == REFERENCE \
            and REFERENCE not in _requested(backend, scope)[0]:
        chosen = None  # reached only as the default order's last resort
    if chosen is None and decision.exclusive:
        raise DispatchError(decision)
    if chosen is None:
        why = _why_skipped(decision, REFERENCE) or \
            f"no hetero backend serves {traits.device.type} tensors"
        _enforce(decision, True, "PyTorch", why)
        result = (None, why)
    else:
        why = _why_skipped(decision, chosen.backend) if decision.fallback else None
        _enforce(decision, decision.fallback, chosen.qualname, why)
        result = (chosen, why)
    bridge_decisions[key] = result
    return result


# ---------------------------------------------------------------- the tuned table
def set_tuned_table(table: "tuned.Table | str | None") -> "tuned.Table | None":
    """Use ``table`` (a :class:`hetero.tuned.Table` or the path of one written by
    ``hetero tune``) for calls that ask for no backend; ``None`` turns tuning off.
    Returns the previous table. A file that is not a tuned table raises ``ValueError``."""
    global _tuned
    previous = _tuned
    if isinstance(table, str) or hasattr(table, "__fspath__"):
        table = tuned.load(table)
    elif table is not None and not isinstance(table, tuned.Table):
        raise TypeError(f"table: expected a hetero.tuned.Table, a path or None, "
                        f"got {type(table).__name__}")
    _tuned = table
    _refresh()
    return previous


def tuned_table() -> "tuned.Table | None":
    """The tuned table in use, or ``None``."""
    return _tuned


def calibrating() -> bool:
    """Whether a call whose bucket the tuned table lacks is measured first: a table is
    in use, ``HETERO_CALIBRATE`` is not ``off``, and nothing is being traced."""
    return (calibrator is not None and _tuned is not None and env.settings().calibrate
            and not torch.compiler.is_compiling())


def _tuned_from_environment() -> None:
    """``HETERO_TUNED`` (a path or ``off``), else this machine's table. A file that is
    not a table, or is another machine's, is reported with a warning and not used
    (importing hetero must not fail); calibration then starts this machine's own."""
    global tuned_ignored
    setting = env.settings().tuned
    tuned_ignored = None
    if setting == "off":
        set_tuned_table(None)
        return
    path = tuned.default_path() if setting is None else Path(setting)
    table = None
    if path.exists():
        try:
            table = tuned.load(path)
            tuned_ignored = table.foreign()
        except ValueError as exc:
            tuned_ignored = str(exc)
        if tuned_ignored is not None:
            warnings.warn(f"tuned table {path} is not used: {tuned_ignored}",
                          HeteroConfigWarning, stacklevel=2)
            table, path = None, tuned.default_path()
    if table is None and env.settings().calibrate:  # this machine's, filled as calls come
        table = tuned.Table(path=str(path), fingerprint=fingerprint.current())
    set_tuned_table(table)


def clear_cache() -> None:
    """Forget all cached decisions (and which fallbacks were already warned about)."""
    decisions.clear()
    bridge_decisions.clear()
    passthrough.clear()
    _warned.clear()
    for listener in cache_listeners:
        listener()


def cache_size() -> int:
    return len(decisions)


def reload() -> None:
    """Re-read the ``HETERO_*`` environment, rediscover backends, re-probe them, reload
    the tuned table and clear every cached decision."""
    env.reload()
    registry.rediscover()
    _tuned_from_environment()


def _refresh() -> None:
    """After any change to backends, ops or the tuned table: forget every decision and
    recompute which optional key fields each op needs."""
    clear_cache()
    kernels = registry.discovered_kernels()
    names = ops.list_ops()
    # Update the same dicts in place (the ops' hot paths hold them), a registered op's
    # entry never missing.
    wants_alignment.update({op: kernels is None or any(
        k.op == op and k.support.alignment > 1 for k in kernels) for op in names})
    wants_sizes.update({op: kernels is None or any(
        k.op == op and k.support.limits_sizes(ops.spec(op).traits) for k in kernels)
        for op in names})
    measuring = _tuned is not None and env.settings().calibrate
    wants_bucket.update({op: _tuned is not None and (measuring or op in _tuned.ops)
                         for op in names})
    for gone in set(wants_alignment) - set(names):
        del wants_alignment[gone], wants_bucket[gone], wants_sizes[gone]


registry.on_change(_refresh)
_tuned_from_environment()
