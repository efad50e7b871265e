"""``hetero.info()``: every backend, whether it can run here and why not, and what each
kernel declares it supports — the data behind ``hetero info``."""

from __future__ import annotations

import dataclasses
import os
import platform

import torch

from . import dispatch, env, registry
from .ops import registry as op_registry


def info() -> dict:
    """A JSON-friendly description of this installation.

    Keys: ``versions`` (hetero, torch, python), ``environment`` (the parsed
    ``HETERO_*`` settings), ``default_order`` per device type, ``ops``: each registered
    op with the available backends' kernels for it, and ``backends``: one
    entry per discovered backend with ``available`` (bool), ``reasons`` (why not),
    ``source`` (distribution), ``api_version`` (the plugin API it follows),
    ``details`` (facts beyond support, e.g. a simulated device's model), and
    ``kernels`` (op, name, declared support);
    ``tuned_table``: the file dispatch's tuned table came from and its entry count, or
    ``None``.
    """
    from . import __version__

    backends = []
    for name, entry in sorted(registry.entries().items()):
        b = entry.backend
        backends.append({
            "name": name,
            "source": entry.source,
            "device_type": getattr(b, "device_type", None),
            "default": getattr(b, "default", None),
            "priority": getattr(b, "priority", None),
            "description": getattr(b, "description", ""),
            "api_version": getattr(b, "api_version", None),
            "details": dict(getattr(b, "details", {}) or {}),
            "available": not entry.reasons_unavailable(),
            "reasons": entry.reasons_unavailable(),
            "kernels": [{"op": op, "name": k.name, "support": k.support.describe(),
                         "backward": k.backward is not None}
                        for op, kernels in entry.kernels.items() for k in kernels],
        })
    ops = [{"name": spec.name, "features": list(spec.features),
            "kernels": [f"{b['name']}.{k['name']}" for b in backends if b["available"]
                        for k in b["kernels"] if k["op"] == spec.name]}
           for spec in op_registry.specs()]
    device_types = sorted({b["device_type"] for b in backends
                           if b["device_type"] not in (None, "any")})
    return {
        "versions": {"hetero": __version__, "torch": torch.__version__,
                     "python": platform.python_version()},
        "environment": {"settings": dataclasses.asdict(env.settings()),
                        "set": {n: v for n, v in os.environ.items()
                                if n.startswith("HETERO_")},
                        "known": list(env.VARIABLES)},
        "fallback_policy": dispatch.fallback_policy(),
        "default_order": {d: dispatch.default_order(d) for d in device_types},
        "tuned_table": None if dispatch.tuned_table() is None else {
            "path": dispatch.tuned_table().path, "entries": len(dispatch.tuned_table())},
        "ops": ops,
        "backends": backends,
    }
