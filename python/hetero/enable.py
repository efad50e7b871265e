"""``hetero.enable()``: the PyTorch calls hetero's ops replace, routed to hetero while
enabled, by one of two mechanisms.

**The native route** (the default where the devices are the CPU only,
:mod:`hetero.native_route`): hetero's kernels stand behind PyTorch's own CPU kernels of
``aten::mm``/``bmm`` and the CPU flash attention, so a routed call costs about what
PyTorch's call costs and other calls pay nothing. It serves ``gemm``, ``attention`` and
``scaled_gemm``: ``F.linear`` without a bias, ``matmul``/``@``, ``torch.mm``/``bmm``,
``F.scaled_dot_product_attention`` where PyTorch runs its flash kernel, and
``torch._scaled_mm``/``_int_mm``; also inside autograd's backward and
``torch.compile``'d code.

**The function mode** (``native=False``; the default for other devices, or when asked
for an op the native route does not serve): a torch *function* mode that sees calls as
the model wrote them. Each op says which calls it replaces (``OpSpec.routes``, built with
:mod:`hetero.routing`): gemm takes ``torch.mm``, ``torch.bmm``, ``torch.addmm``,
``torch.matmul`` and ``@`` (and the Tensor methods) and ``F.linear``; attention takes
``F.scaled_dot_product_attention``; scaled_gemm ``torch._scaled_mm``/``_int_mm``;
varlen_attention ``varlen_attn``. ``linear`` and ``matmul`` arrive whole (the leading dims
of ``x @ W`` fold into one GEMM, as aten does), autograd records hetero's ops with their
own backward, and ``torch.compile`` traces through it — a compiled graph calls
``torch.ops.hetero.*`` with no graph break. Its cost is Python on every torch call
(``bench/RESULTS.md``), which is why the CPU default is native.

Calls that do not fit hetero's ops are left to PyTorch and counted in
:func:`hetero.stats` with the reason: 1-D operands, ``out=``, dropout, a mask that needs
a gradient, non-float dtypes, devices not enabled. So are calls the ops find no hetero
kernel for (``torch.ops.hetero.*`` decide that). Arguments PyTorch would reject go to
PyTorch untouched, so errors are PyTorch's own.

Differences from PyTorch a routed call may show: results within the documented
tolerances rather than bitwise equal; a query row that may see no key gives zeros
(PyTorch gives NaN). ``is_causal=True`` with ``Sq != Sk`` keeps PyTorch's top-left
alignment (the function mode makes it a mask; the native route leaves it to PyTorch).

In the function mode, a call PyTorch ends up computing (the ``torch`` backend measured
fastest, or a reason to leave it) is decided once per signature — the function, the
arguments' types, shapes, strides, dtypes, devices and grad flags, the other arguments,
the scope — and later calls with that signature go straight to PyTorch, counted as the
first was (:data:`hetero.dispatch.passthrough`, cleared with every other cached decision).

DTensor calls (tensor parallel, FSDP2) go, in the function mode, to the operators where
the op declares how they shard (:mod:`hetero.distributed`); on the native route each
rank's local GEMMs reach hetero's kernels behind aten.

Enabling is per thread in both: a torch function mode is per thread, and the native
route keeps a per-thread switch (its kernel registration is per process, undone when the
last thread stops).
"""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager, nullcontext
from typing import Iterable, Iterator

import torch
from torch.overrides import TorchFunctionMode, _get_current_function_mode_stack

from . import counters, dispatch, distributed, native_route, registry, torch_ops
from .backends.pytorch import NAME as TORCH_BACKEND
from .dispatch import REFERENCE
from .ops import registry as op_registry
from .routing import Call, bind


def routes() -> dict:
    """``{torch function: Route}`` of every registered op (``OpSpec.routes``)."""
    return {func: route for spec in op_registry.specs() for func, route in
            (spec.routes or {}).items()}


def routed_ops() -> tuple[str, ...]:
    """The ops :func:`enable` can route: those with routes."""
    return tuple(spec.name for spec in op_registry.specs() if spec.routes)


def records_autograd(args) -> bool:
    """Whether autograd would record a call on ``args``."""
    return torch.is_grad_enabled() and any(
        isinstance(a, torch.Tensor) and a.requires_grad for a in args)


class _Routing(TorchFunctionMode):
    """The torch function mode behind enable()/enabled()."""

    def __init__(self, ops: frozenset[str], devices: frozenset[str], by_enable: bool):
        super().__init__()
        self.ops, self.devices, self.by_enable = ops, devices, by_enable
        self.routes = routes()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        route = self.routes.get(func)
        if route is None or route.op not in self.ops:
            return func(*args, **kwargs)
        # Only functions with a call PyTorch computed pay for the signature.
        signature = self._signature(func, route.op, args, kwargs) \
            if func in _passthrough_funcs else None
        known = _passthrough.get(signature) if signature is not None else None
        if known is not None:  # decided before: PyTorch computes it, counted as then
            result = func(*args, **kwargs)
            _count(route.op, *known)
            return result
        bound = bind(args, kwargs, route.names, route.defaults)
        verdict = "unsupported arguments (out=, ...)" if bound is None \
            else route.route(self, *bound)
        native = None
        if isinstance(verdict, Call) and _dtensors(verdict.args):
            if not distributed.has_rules(route.op):
                verdict = f"DTensor arguments: {route.op} has no sharding rule"
            else:  # DTensor shards the call by the op's rules; the operator decides
                distributed.install()
                return verdict.run()
        if isinstance(verdict, Call):
            if torch.compiler.is_compiling():  # the operator decides when the graph runs
                return verdict.run()
            autograd = records_autograd(verdict.args)
            # A call autograd records is decided as a training step (forward and backward).
            with dispatch.training() if autograd else nullcontext():
                with torch_ops.plain_torch():  # decide here: what PyTorch serves runs as written
                    key, record = verdict.prepare()
                    kernel, why = torch_ops.decide(key, record)
                    if kernel is not None and kernel.backend != TORCH_BACKEND and not autograd:
                        return verdict.serve(kernel, record)  # no operator needed in between
                if kernel is not None and kernel.backend != TORCH_BACKEND:
                    return verdict.run()  # the operator, for its autograd
            # PyTorch's own call: chosen (the torch backend), or the last resort
            native, verdict = (None, why) if kernel is None else (kernel.qualname, None)
        result = func(*args, **kwargs)
        if torch.compiler.is_compiling():
            return result
        counted = (None, None, None) if native is None and verdict is None else (
            native, why if native is not None else f"{func.__name__}: {verdict}",
            route.flops(args, result))
        _count(route.op, *counted)
        if signature is None:
            signature = self._signature(func, route.op, args, kwargs)
        if signature is not None:
            if len(_passthrough) >= _PASSTHROUGH_MAX:
                _passthrough.clear()
            _passthrough[signature] = counted
            _passthrough_funcs.add(func)
        return result

    def _signature(self, func, op: str, args, kwargs) -> tuple | None:
        """What decides how a call is served, as a dict key (``None``: not cacheable —
        compiling, an argument that does not hash, or an op whose kernels look at data
        pointers)."""
        if _wants_alignment.get(op, True) or torch.compiler.is_compiling():
            return None
        key = (func, self.ops, self.devices, dispatch.current_scope.get(),
               torch.is_grad_enabled(), torch.is_inference_mode_enabled(),
               *map(_described, args), *((k, _described(v)) for k, v in kwargs.items()))
        try:
            hash(key)
        except TypeError:
            return None
        return key


_passthrough = dispatch.passthrough
_passthrough_funcs: set = set()  # functions with an entry there (the set only grows)
_wants_alignment = dispatch.wants_alignment
_PASSTHROUGH_MAX = 4096  # signatures kept (a model has a few hundred)


def _described(value):
    """A tensor as what routing looks at (type, shape, strides, dtype, device, grad);
    anything else as itself."""
    if isinstance(value, torch.Tensor):
        return (type(value), value.shape, value.stride(), value.dtype, value.device,
                value.requires_grad)
    return value


def _count(op: str, served_by: str | None, why: str | None, flops: float | None) -> None:
    """Count a call PyTorch computed: as the ``torch`` backend's (``served_by``), as a
    fallback with its reason, or not at all (both ``None``)."""
    if served_by is not None:
        counters.record(op, served_by, flops, skipped=why)
    elif why is not None:
        counters.record_fallback(op, why, flops)


# ---------------------------------------------------------------- switching it on and off
def _dtensors(args) -> bool:
    """Whether any argument is a DTensor (no cost while DTensor is not loaded)."""
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and any(isinstance(a, module.DTensor) for a in args)


def served_device_types() -> frozenset[str]:
    """Device types that some available backend with kernels of its own serves by
    default (not the reference, nor backends of any device such as ``torch``): what
    :func:`enable` routes unless told otherwise."""
    return frozenset(
        e.backend.device_type for e in registry.entries().values()
        if e.backend is not None and e.name != REFERENCE and e.backend.default
        and e.backend.device_type != "any" and not e.reasons_unavailable())


def _names(ops: Iterable[str] | str) -> tuple[str, ...]:
    """``ops`` as a tuple of names (one name may be given as a str)."""
    return (ops,) if isinstance(ops, str) else tuple(ops)


def _config(ops, devices) -> tuple[frozenset[str], frozenset[str]]:
    known = routed_ops()
    if ops is None:
        ops = known
    ops = _names(ops)
    unknown = [op for op in ops if op not in known]
    if unknown:
        raise ValueError(f"ops: unknown {unknown}; expected some of {known}")
    if devices is None:
        devices = served_device_types()
    elif isinstance(devices, (str, torch.device)):
        devices = (devices,)
    types = frozenset(torch.device(d).type if isinstance(d, str) else d.type for d in devices)
    return frozenset(ops), types


_NATIVE_OPS = frozenset({"gemm", "attention", "scaled_gemm"})
_native_by_enable = threading.local()  # .on: this thread's native route came from enable()


def _native_config(ops, devices) -> frozenset[str]:
    """``enable(native=True)``'s ops, checked with its devices: gemm, attention and
    scaled_gemm on cpu only."""
    ops = _NATIVE_OPS if ops is None else frozenset(_names(ops))
    if not ops <= _NATIVE_OPS or not ops:
        raise ValueError(f"ops: the native route serves {sorted(_NATIVE_OPS)} only, "
                         f"got {sorted(ops)}; use native=False for the others")
    if devices is not None:
        _, types = _config(None, devices)
        if types != {"cpu"}:
            raise ValueError(f"devices: the native route serves 'cpu' only, got {sorted(types)}")
    if _active() is not None:
        raise RuntimeError("hetero.enable(native=True): hetero is enabled with the function "
                           "mode on this thread; leave it first")
    return ops


def _native(ops, devices, native: bool | None) -> bool:
    """Whether enabling routes natively: as asked, else (``native=None``) where it can,
    the devices are the CPU only and no op it does not serve is asked for by name."""
    if native is not None:
        return bool(native)
    if native_route.unavailable() is not None or _active() is not None:
        return False
    if ops is not None and not frozenset(_names(ops)) <= _NATIVE_OPS:
        return False
    types = served_device_types() if devices is None else _config(None, devices)[1]
    return types == {"cpu"}


def _active() -> _Routing | None:
    for mode in reversed(_get_current_function_mode_stack()):
        if isinstance(mode, _Routing):
            return mode
    return None


def enable(ops: Iterable[str] | str | None = None,
           devices: Iterable[str | torch.device] | str | None = None, *,
           native: bool | None = None) -> None:
    """Route PyTorch's matmul family and ``scaled_dot_product_attention`` to hetero on
    the calling thread until :func:`disable` (see the module docs for what is routed).

    Args:
        ops: names of the ops to route (default: every op with routes,
            :func:`routed_ops`).
        devices: device types to route (default: those a hetero backend serves here,
            :func:`served_device_types`); calls on others stay with PyTorch.
        native: ``True`` routes natively (:mod:`hetero.native_route`): ops ``"gemm"``,
            ``"attention"``, ``"scaled_gemm"`` (all three by default) and devices
            ``"cpu"`` only; ``RuntimeError`` where this process cannot
            (``native_route.unavailable()`` says why). ``False``: the function mode.
            ``None`` (default): native where it can run, the devices are the CPU only
            and no other op is asked for by name.

    Calling it again while enabled changes what is routed.
    """
    if _native(ops, devices, native):
        ops = _native_config(ops, devices)
        if native_route.active() and not getattr(_native_by_enable, "on", False):
            raise RuntimeError("hetero.enable(): a `with hetero.enabled()` block routes "
                               "natively here; it ends routing on exit")
        if native_route.active():
            native_route.stop()  # enabled again: what is routed changes
        native_route.start(ops)
        _native_by_enable.on = True
        return
    if native_route.active():
        raise RuntimeError("hetero.enable(): hetero routes natively on this thread "
                           "(native=True); leave that first")
    ops, devices = _config(ops, devices)
    mode = _active()
    if mode is None:
        _Routing(ops, devices, by_enable=True).__enter__()
    else:
        mode.ops, mode.devices, mode.routes = ops, devices, routes()


def disable() -> None:
    """Stop what :func:`enable` started: PyTorch runs exactly as before. Does nothing
    when hetero is not enabled."""
    if native_route.active():
        if not getattr(_native_by_enable, "on", False):
            raise RuntimeError("hetero.disable(): hetero is enabled by a `with "
                               "hetero.enabled()` block here, which ends it on exit")
        _native_by_enable.on = False
        native_route.stop()
        return
    mode = _active()
    if mode is None:
        return
    if not mode.by_enable:
        raise RuntimeError("hetero.disable(): hetero is enabled by a `with "
                           "hetero.enabled()` block here, which ends it on exit")
    if _get_current_function_mode_stack()[-1] is not mode:
        raise RuntimeError("hetero.disable(): a torch function mode entered after "
                           "hetero.enable() is still active; exit it first")
    mode.__exit__(None, None, None)


@contextmanager
def enabled(ops: Iterable[str] | str | None = None,
            devices: Iterable[str | torch.device] | str | None = None, *,
            native: bool | None = None) -> Iterator[None]:
    """:func:`enable` for the duration of a ``with`` block (arguments as there); inside
    an enabled region it changes what is routed until the block ends.

    >>> with hetero.enabled(ops="gemm", devices="cpu"):
    ...     logits = model(tokens)
    """
    if _native(ops, devices, native):
        native_route.start(_native_config(ops, devices))
        try:
            yield
        finally:
            native_route.stop()
        return
    if native_route.active():
        raise RuntimeError("hetero.enabled(): hetero routes natively on this thread "
                           "(native=True); leave that first")
    config = _config(ops, devices)
    mode = _active()
    if mode is None:
        with _Routing(*config, by_enable=False):
            yield
        return
    saved = mode.ops, mode.devices
    mode.ops, mode.devices = config
    try:
        yield
    finally:
        mode.ops, mode.devices = saved


def how_routed(op: str) -> tuple[bool, frozenset[str], str | None]:
    """How enabling routes ``op``'s calls on this thread: with the routing on here, else
    as :func:`enable` with its defaults would. ``(native, device types, why not)``:
    whether the native route serves them, the device types routed, and why ``op`` is not
    routed at all (``None``: it is)."""
    mode = _active()
    if native_route.active() or (mode is None and _native(None, None, None)):
        cpu = frozenset({"cpu"})
        if op not in _NATIVE_OPS:
            return True, cpu, (f"the native route does not serve {op}; "
                               "hetero.enable(native=False) routes it")
        if native_route.active() and op not in native_route.thread_ops():
            return True, cpu, f"{op} is not enabled"
        return True, cpu, None
    ops, devices = (mode.ops, mode.devices) if mode is not None else _config(None, None)
    return False, devices, None if op in ops else f"{op} is not enabled"


def is_enabled() -> bool:
    """Whether hetero routes PyTorch's calls on this thread right now."""
    return _active() is not None or native_route.active()
