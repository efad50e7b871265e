"""Backend discovery and the kernel registry.

Backends come from the ``hetero.backends`` entry-point group — hetero's own are declared
in its ``pyproject.toml`` exactly like a vendor's — or from :func:`register` at run
time. A backend that fails to load is recorded with the error, never fatal: ``hetero
info`` and ``explain()`` show the cause instead of burying it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from importlib import metadata

from .backends.base import Backend, api_incompatibility
from .errors import HeteroConfigWarning
from .kernel import Kernel
from .ops import registry as ops

ENTRY_POINT_GROUP = "hetero.backends"


@dataclass
class BackendEntry:
    """A discovered backend: the object, or why it could not be loaded."""

    name: str
    source: str  # "distribution version" or "register()"
    backend: Backend | None = None
    load_error: str | None = None
    kernels: dict[str, list[Kernel]] = field(default_factory=dict)  # op -> kernels
    _probe: list[str] | None = None

    def reasons_unavailable(self) -> list[str]:
        """Load error or probe reasons (probed once, then cached)."""
        if self.load_error:
            return [self.load_error]
        if self._probe is None:
            try:
                self._probe = list(self.backend.probe())
            except Exception as exc:  # a probe must never take hetero down
                self._probe = [f"probe() raised {type(exc).__name__}: {exc}"]
        return self._probe


_entries: dict[str, BackendEntry] | None = None
_registered: dict[str, Backend] = {}  # from register(): kept across rediscover()
_listeners: list = []  # called after every change (dispatch clears its cache)


def on_change(callback) -> None:
    """Call ``callback()`` whenever the set of backends changes."""
    _listeners.append(callback)


def _changed() -> None:
    for callback in _listeners:
        callback()


def _instantiate(obj) -> Backend:
    if isinstance(obj, type) or (callable(obj) and not isinstance(obj, Backend)):
        obj = obj()
    for attr in ("name", "device_type", "probe", "kernels", "synchronize"):
        if not hasattr(obj, attr):
            raise TypeError(f"{obj!r} is not a hetero backend: it has no {attr!r}")
    return obj


def _kernels(backend) -> tuple[dict[str, list[Kernel]], str | None]:
    """The backend's kernels by op, or why the backend is refused: a declaration that
    names features or limits its op does not have (kernels of ops not registered here
    are kept, unchecked; no call reaches them)."""
    found: dict[str, list[Kernel]] = {}
    for kernel in backend.kernels():
        spec = ops.get(kernel.op)
        errors = kernel.support.declaration_errors(spec) if spec is not None else []
        if errors:
            return {}, (f"backend {backend.name!r}: kernel {kernel.op}/{kernel.name} "
                        f"declares {'; '.join(errors)}; it is not loaded")
        found.setdefault(kernel.op, []).append(replace(kernel, backend=backend.name))
    return found, None


def _add(entries: dict[str, BackendEntry], entry: BackendEntry) -> None:
    if entry.name in entries:
        previous = entries[entry.name]
        warnings.warn(f"backend {entry.name!r} from {entry.source} ignored: the name is "
                      f"taken by {previous.source}", HeteroConfigWarning, stacklevel=4)
        return
    if entry.backend is not None and entry.load_error is None:
        refused = api_incompatibility(entry.backend)
        if not refused:
            entry.kernels, refused = _kernels(entry.backend)
        if refused:  # refused whole: its kernels are never asked for
            warnings.warn(f"hetero: {refused}", HeteroConfigWarning, stacklevel=4)
            entry.load_error = refused
    entries[entry.name] = entry


def _discover() -> dict[str, BackendEntry]:
    entries: dict[str, BackendEntry] = {}
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = getattr(ep, "dist", None)
        source = f"{dist.name} {dist.version}" if dist else ep.value
        try:
            backend = _instantiate(ep.load())
            if backend.name != ep.name:
                raise ValueError(f"entry point is named {ep.name!r} but the backend "
                                 f"calls itself {backend.name!r}")
            entry = BackendEntry(ep.name, source, backend)
        except Exception as exc:
            message = f"failed to load from {source}: {type(exc).__name__}: {exc}"
            warnings.warn(f"hetero backend {ep.name!r} {message}", HeteroConfigWarning,
                          stacklevel=3)
            entry = BackendEntry(ep.name, source, load_error=message)
        _add(entries, entry)
    for backend in _registered.values():
        _add(entries, BackendEntry(backend.name, "register()", backend))
    return entries


def entries() -> dict[str, BackendEntry]:
    """All known backends by name (discovered on first use)."""
    global _entries
    if _entries is None:
        _entries = _discover()
        _changed()
    return _entries


def get(name: str) -> BackendEntry | None:
    return entries().get(name)


def unknown_name(name: str) -> str:
    """What to say of a backend name nothing is installed under."""
    return (f"no backend named {name!r} is installed "
            f"(installed: {', '.join(sorted(entries()))})")


def require(name: str, argument: str) -> BackendEntry:
    """The backend installed as ``name``; ``ValueError`` naming ``argument`` and the
    installed backends when there is none."""
    entry = entries().get(name)
    if entry is None:
        raise ValueError(f"{argument}: {unknown_name(name)}")
    return entry


def discovered_kernels() -> list[Kernel] | None:
    """Every kernel of every loaded backend, or ``None`` before discovery."""
    if _entries is None:
        return None
    return [k for e in _entries.values() for ks in e.kernels.values() for k in ks]


def register(backend: Backend) -> None:
    """Register a backend object at run time (tests, notebooks, private plugins).
    ``ValueError`` if hetero cannot load it (plugin API, declarations)."""
    backend = _instantiate(backend)
    refused = api_incompatibility(backend) or _kernels(backend)[1]
    if refused:
        raise ValueError(refused)
    if backend.name in entries():
        raise ValueError(f"a backend named {backend.name!r} is already registered "
                         f"({entries()[backend.name].source})")
    _registered[backend.name] = backend
    _add(_entries, BackendEntry(backend.name, "register()", backend))
    _changed()


def unregister(name: str) -> None:
    """Remove a backend registered under ``name``."""
    if entries().pop(name, None) is None:
        raise ValueError(f"no backend named {name!r} is registered")
    _registered.pop(name, None)
    _changed()


def _on_ops_change() -> None:
    """Ops came or went: ask every loaded backend for its kernels again (the reference
    backend serves every op, so it has new ones)."""
    for entry in (_entries or {}).values():
        if entry.backend is not None and entry.load_error is None:
            entry.kernels, refused = _kernels(entry.backend)
            if refused:
                warnings.warn(f"hetero: {refused}", HeteroConfigWarning, stacklevel=4)
                entry.load_error = refused
    _changed()


ops.on_change(_on_ops_change)


def rediscover() -> None:
    """Discover the entry points again and re-probe every backend (e.g. after
    installing a plugin into the running interpreter's path). Backends added with
    :func:`register` are kept. Discovery happens now, so what it warns about is said
    here."""
    global _entries
    _entries = None
    entries()
