"""Watching a model's routed calls: which module made each, what served it, and how far
its result is from the float64 oracle.

:class:`Recorder` is installed for one run of a model: forward hooks on every module
keep the path of the innermost module running (``model.layers.3.self_attn``, as
``named_modules()`` names it), and an
observer of hetero's counters (:data:`hetero.counters.observers`) sees every counted
call right after its kernel ran. For a call it is asked to check it runs the op's
reference in float64 on the same record and measures the kernel's error against the
op's own bound; for a call it is asked to *move*, it then overwrites the output with
what the ``reference`` backend computes — as if that one call had run there.

A call is identified by ``(module path, op, n)``: the n-th call of that op from that
module in the run, stable across runs of the same model on the same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .. import counters, registry
from ..ops import registry as op_registry
from ..ops._checks import dtype_name

#: Where calls made outside any module's forward (a backward pass) are attributed.
OUTSIDE = "(outside forward)"
#: The path of the audited model itself (its submodules are named as in
#: ``model.named_modules()``: ``model.layers.3.self_attn``).
ROOT = "(model)"


@dataclass
class CallRecord:
    """One routed call. ``error``/``bound``/``ratio`` are ``None`` when it was not checked
    (not sampled, no record, or an op without a reference); ``reason`` is set when
    PyTorch computed it instead of hetero, and says why."""

    module: str
    op: str
    index: int
    served_by: str | None
    reason: str | None = None
    shapes: str = ""
    dtype: str = ""
    error: float | None = None
    bound: float | None = None
    ratio: float | None = None

    @property
    def key(self) -> tuple[str, str, int]:
        return self.module, self.op, self.index

    def as_dict(self) -> dict:
        return {"module": self.module, "op": self.op, "index": self.index,
                "served_by": self.served_by, "reason": self.reason, "shapes": self.shapes,
                "dtype": self.dtype, "error": self.error, "bound": self.bound,
                "ratio": self.ratio}


def _shapes(args) -> str:
    """``a 1×64×256, b 256×512``: the record's tensor inputs."""
    parts = []
    for name, value in args._asdict().items():
        if name != "out" and isinstance(value, torch.Tensor):
            parts.append(f"{name} {'×'.join(map(str, value.shape)) or 'scalar'}")
    return ", ".join(parts)


def shadow_check(op: str, args) -> tuple[float, float, float]:
    """``(error, bound, ratio)`` of ``args.out`` against the op's float64 reference:
    the largest error, the bound where the error is largest relative to it, and the
    largest error-to-bound ratio (above 1: out of bound). NaN where the reference is
    finite counts as infinitely wrong."""
    spec = op_registry.spec(op)
    exact = spec.reference(args, torch.float64)
    bound = spec.error_bound(args, exact)
    got = args.out.double()
    if got.numel() == 0:
        return 0.0, 0.0, 0.0
    error = (got - exact).abs()
    error = torch.where(torch.isnan(got) & ~torch.isnan(exact), torch.inf, error)
    error = torch.where(got == exact, 0.0, error)  # equal infinities, and both NaN
    error = torch.nan_to_num(error, nan=0.0)
    bounds = torch.as_tensor(bound, dtype=torch.float64).expand_as(error)
    ratios = error / bounds.clamp_min(torch.finfo(torch.float64).tiny)
    worst = int(ratios.argmax())
    return (float(error.max()), float(bounds.reshape(-1)[worst]),
            float(ratios.reshape(-1)[worst]))


@dataclass
class Recorder:
    """Records (and checks, and moves) the routed calls of one run of ``model``.

    check: check one call in ``check`` (1: all; 0: none).
    ops: the ops to check (``None``: all).
    move: call keys whose results are replaced by the reference backend's.
    """

    model: torch.nn.Module
    check: int = 1
    ops: frozenset[str] | None = None
    move: frozenset = frozenset()
    calls: list[CallRecord] = field(default_factory=list)
    _stack: list[str] = field(default_factory=list)
    _seen: dict = field(default_factory=dict)
    _handles: list = field(default_factory=list)

    def __enter__(self) -> "Recorder":
        for name, module in self.model.named_modules():
            path = name or ROOT
            self._handles.append(module.register_forward_pre_hook(
                lambda m, a, path=path: self._stack.append(path)))
            self._handles.append(module.register_forward_hook(self._leave, always_call=True))
        counters.observers.append(self._observe)
        return self

    def __exit__(self, *exc) -> None:
        counters.observers.remove(self._observe)
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._stack.clear()

    def _leave(self, module, args, output) -> None:
        self._stack.pop()  # and return None: a forward hook's result replaces the output

    def _observe(self, op, served_by, args, reason) -> None:
        module = self._stack[-1] if self._stack else OUTSIDE
        index = self._seen.get((module, op), 0)
        self._seen[(module, op)] = index + 1
        call = CallRecord(module, op, index, served_by, reason)
        self.calls.append(call)
        if args is None or op_registry.get(op) is None:
            return
        with torch._C.DisableTorchFunction(), torch.no_grad():
            call.shapes, call.dtype = _shapes(args), dtype_name(args.out.dtype)
            sampled = self.check and (len(self.calls) - 1) % self.check == 0
            if sampled and (self.ops is None or op in self.ops):
                call.error, call.bound, call.ratio = shadow_check(op, args)
            if call.key in self.move:
                registry.get("reference").kernels[op][0].fn(args)
