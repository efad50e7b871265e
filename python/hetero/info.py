"""``hetero.info()``: every backend, whether it can run here and why not, and what each
kernel declares it supports — the data behind ``hetero info``."""

from __future__ import annotations

import dataclasses
import os
import platform

import torch

from . import calibration, dispatch, env, native_route, registry
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
    ``tuned_table``: the file dispatch's tuned table came from (where calibration saves
    it), its entry count and the machine fingerprint it was measured on, or ``None``;
    ``tuned_table_ignored``: why a table found at start-up is not used;
    ``calibration``: whether calls of unmeasured buckets are measured, and what that
    has cost this process (buckets, seconds, failures); ``native_route``: whether
    ``enable()`` can route CPU calls natively here, and why not.
    """
    from . import __version__

    table, spent = dispatch.tuned_table(), calibration.cost()

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
        "tuned_table": None if table is None else {
            "path": table.path, "entries": len(table), "fingerprint": table.fingerprint},
        "tuned_table_ignored": dispatch.tuned_ignored,
        "calibration": {"on": dispatch.calibrating(), "buckets": spent.buckets,
                        "seconds": round(spent.seconds, 3), "failed": spent.failed},
        "native_route": {"available": native_route.unavailable() is None,
                         "reason": native_route.unavailable()},
        "ops": ops,
        "backends": backends,
    }
