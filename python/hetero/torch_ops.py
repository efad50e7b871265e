"""The torch bridge: what every op's torch operator (``torch.ops.hetero.<op>``, defined
in the op's folder as ``torch_op.py``) goes through.

An op's torch operator is a ``torch.library`` op with a fake (meta) impl and autograd,
so ``torch.compile`` puts it in its graphs without a break and
``torch.library.opcheck`` passes on it. Each call is decided by hetero's dispatcher
(:func:`hetero.dispatch.resolve_bridge`): the kernel it picks computes the call; when
no hetero kernel can (the reference backend serves only when asked for by name),
PyTorch computes it — counted, with the reason, in :func:`hetero.stats`, and warned
about under the fallback policy.
"""

from __future__ import annotations

import torch

from . import counters, dispatch
from .kernel import Kernel

_bridge_decisions = dispatch.bridge_decisions


#: Set by :mod:`hetero.native_route` once loaded: ``set_thread_bypass(on) -> previous``.
native_bypass = None


class plain_torch:  # noqa: N801 - used like a function: ``with plain_torch():``
    """Kernels and fallbacks run with torch function modes and the native route off (so
    ``hetero.enable`` does not route hetero's own torch calls back to hetero) and
    without autograd. A plain class: every routed call enters it, and a generator-based
    context costs more than twice as much."""

    __slots__ = ("functions_off", "grad", "route_off")

    def __enter__(self):
        self.functions_off = torch._C.DisableTorchFunction()
        self.functions_off.__enter__()
        self.grad = torch.is_grad_enabled()
        torch._C._set_grad_enabled(False)
        self.route_off = unrouted()
        self.route_off.__enter__()

    def __exit__(self, *exc):
        self.route_off.__exit__(*exc)
        torch._C._set_grad_enabled(self.grad)
        self.functions_off.__exit__(*exc)


class unrouted:  # noqa: N801 - used like a function: ``with unrouted():``
    """Within the block, PyTorch's matmuls on this thread run PyTorch's own kernels even
    where :mod:`hetero.native_route` routes them (the ``torch`` backend's kernels). A
    plain class: it sits on hot paths, where a generator-based context costs more."""

    __slots__ = ("previous",)

    def __enter__(self):
        self.previous = None if native_bypass is None else native_bypass(True)

    def __exit__(self, *exc):
        if self.previous is not None:
            native_bypass(self.previous)


def decide(key: tuple, args=None) -> tuple[Kernel | None, str | None]:
    """``(kernel, why earlier backends were skipped or None)``, or ``(None, why PyTorch
    computes the call)``, for ``key`` (the call's record ``args`` lets an unmeasured
    bucket be calibrated)."""
    return _bridge_decisions.get(key) or dispatch.resolve_bridge(key, args)


def serve(key: tuple, args, flops: float) -> Kernel | None:
    """Run the call ``key``/``args`` on the kernel dispatch picks and count it; or, when
    PyTorch is to compute it, count the fallback and return ``None``."""
    kernel, why = decide(key, args)
    if kernel is None:
        counters.record_fallback(key[0], why, flops)
        return None
    kernel.fn(args)
    counters.record(key[0], kernel.qualname, flops, args, why)
    return kernel
