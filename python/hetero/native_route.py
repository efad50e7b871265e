"""The native route: :func:`hetero.enable` at native cost on CPU (``enable(native=True)``).

While any thread routes natively, these CPU kernels of PyTorch are hetero's
(``csrc/route/``, registered through PyTorch's stable C shim):

- ``aten::mm`` and ``aten::bmm`` (and their ``out=`` forms): ``F.linear`` without a
  bias, ``matmul`` and ``@`` (whose leading dims aten folds into one ``mm``),
  ``torch.mm``/``bmm``, the GEMMs of autograd's backward and of ``torch.compile``'d code;
- ``aten::_scaled_dot_product_flash_attention_for_cpu`` and its backward: what
  ``F.scaled_dot_product_attention`` runs on CPU once PyTorch has checked its arguments
  (and turned a bool mask additive). hetero writes the output and the log-sum-exp in
  PyTorch's layouts, so either side's backward takes either side's forward;
- ``aten::_scaled_mm`` and ``aten::_int_mm`` (and their ``out=`` forms): heavy calls,
  so a routed one goes to Python (:func:`_run_scaled_mm`, :func:`_run_int_mm`), which
  serves it through the function mode's routes on hetero's scaled GEMM or hands it back
  to PyTorch, counted either way.

There is no torch function mode, so calls hetero does not route cost nothing.

Two more users of the same native cache: the common cases of :func:`hetero.gemm` and
:func:`hetero.scaled_gemm`, served whether or not anything is enabled
(:mod:`hetero.native_entries`), and calibration, which times the candidates of a call the route serves as the route
serves them (:func:`serving`) and keeps them as the tuned table's ``<op>@native``
entries, which decide the route's calls (``dispatch.served_natively``).

Each call looks its decision up in a native cache keyed by operator, sizes, dtype,
flags, layout class, pointer alignment and the ``hetero.use`` scope; the sizes by their
bucket (powers of two, as the tuned table's) wherever no kernel limits sizes, so a
decode step's new key length or a batch's new token count does not ask again. A miss asks
hetero's dispatcher here, once, on the real tensors (:func:`_decide_gemm`,
:func:`_decide_attention`, run as ``hetero_route::*`` ops through the dispatcher): the
decision runs hetero's native kernel (``cpu.gemm``, ``cpu.flash``), PyTorch's own CPU
kernel (the ``torch`` backend measured faster, or a reason to leave the call; counted
either way) or, for GEMMs, a kernel written in Python (:func:`_run_gemm`). Native counts
join :func:`hetero.stats`; any change that clears hetero's cached decisions clears these.

Scope: the routing flag is per thread (autograd runs a CPU backward on the calling
thread, so its kernels are routed too); the kernel registration is per process and
undone when the last thread stops routing. Not routed this way: ``F.linear`` with a bias
(aten's ``addmm`` cannot be registered through the stable shim), SDPA calls PyTorch
sends to its math path (dropout, ``Dv != D``, ...; their GEMMs are routed), ``is_causal``
with ``Sq != Sk`` (counted), and ``varlen_attn`` (the function mode routes it). A failure
in Python while deciding or running surfaces as a ``RuntimeError`` carrying its message.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F

from . import counters, dispatch, env, torch_ops
from .backends.pytorch import NAME as TORCH_BACKEND
from .ops import registry as op_registry
from .ops._checks import real_out
from .routing import Call, bind

try:
    from ._C import route as _native
except ImportError as exc:  # reported by unavailable()
    _native, _IMPORT_ERROR = None, exc
else:
    _IMPORT_ERROR = None

TORCH, NATIVE, PYTHON = 0, 1, 2  # route.h's Action
_NATIVE_KERNELS = {"gemm": {"cpu.gemm"}, "attention": {"cpu.flash"},
                   "attention_backward": {"cpu.flash"}}
_OP_BITS: dict[str, int] = {}  # op -> its RoutedOp bit (route.h), once loaded
_NO_COUNTER = 1 << 30  # beyond the native counters: not counted there


class _Devices:
    """What the function mode's routes read from it: the device types routed."""
    devices = frozenset({"cpu"})


_slots: dict[tuple[bool, str, str], int] = {}  # (served?, op, kernel or reason) -> slot
_state = threading.local()  # .stack: (ops it replaced, its ops) of each nested start here
_why_not: str | None = None
_loaded = False
_ops_defined = False


def unavailable() -> str | None:
    """Why the native route cannot run in this process, or ``None`` when it can."""
    global _why_not, _loaded
    if _loaded:
        return None
    if _native is None:
        return f"hetero._C did not load: {_IMPORT_ERROR}"
    if not sys.platform.startswith("linux"):
        return "the native route finds PyTorch's C shim with dlopen/dlsym on Linux only"
    if _why_not is None:
        libtorch = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")
        why = _native.load(libtorch)
        if why:
            _why_not = why
        else:
            _loaded = True
            _native.set_error_reader(_pop_error)
            dispatch.cache_listeners.append(_native.clear_decisions)
            dispatch.scope_listeners.append(_native.set_thread_scope)
            counters.sources.append(_counts)
            counters.resetters.append(_native.reset_counts)
            torch_ops.native_bypass = _native.set_thread_bypass
            _OP_BITS.update(gemm=_native.GEMM, attention=_native.ATTENTION,
                            scaled_gemm=_native.SCALED_GEMM)
            return None
    return _why_not


def start(ops=("gemm", "attention", "scaled_gemm")) -> None:
    """Route this thread's CPU ``ops`` natively until the matching :func:`stop` (nests:
    an inner start sets what is routed until it stops); RuntimeError where it cannot."""
    _install()
    mask = sum(_OP_BITS[op] for op in set(ops))
    stack = _state.__dict__.setdefault("stack", [])
    if not stack:
        _native.set_thread_scope(dispatch.scope_id(dispatch.current_scope.get()))
    stack.append((_native.set_thread_ops(mask), frozenset(ops)))


def stop() -> None:
    """Undo one :func:`start` on this thread."""
    stack = getattr(_state, "stack", None)
    if not stack:
        return
    _native.set_thread_ops(stack.pop()[0])
    _native.uninstall()


def _install() -> None:
    why = unavailable()
    if why is not None:
        raise RuntimeError(f"hetero.enable(native=True): {why}")
    _define_ops()
    _native.set_num_threads(_env_threads())
    if _native.installs():
        _native.install()
    else:
        with _quiet_stderr():  # the dispatcher warns that the kernels replace PyTorch's
            _native.install()


#: The ops whose CPU calls the route serves natively (a calibration times them so), and
#: the backends it serves as themselves (``None``: any; for attention, a kernel written
#: in Python is left to PyTorch).
SERVED_NATIVELY = {"gemm": None, "attention": frozenset({"cpu", TORCH_BACKEND})}


@contextmanager
def serving(op: str):
    """For calibration: yields ``as_served(fn, backend) -> call``, where ``call()`` runs
    ``fn`` (PyTorch's own call of ``op``, e.g. ``torch.matmul``) routed natively with
    dispatch held to ``backend`` (``"torch"``: PyTorch's kernel), on this thread, not
    counted, even while deciding; ``None`` for a backend the route does not serve as
    itself. Candidates timed so pay the same per-call cost, the native route's, as the
    calls they will serve (hetero's Python path would charge hetero's kernels alone for
    it). ``op`` in :data:`SERVED_NATIVELY`."""
    _install()
    bit = _OP_BITS[op]
    served = SERVED_NATIVELY[op]

    def as_served(fn, backend: str):
        if served is not None and backend not in served:
            return None
        scope = dispatch.Scope((backend,), None)

        def call():
            token = dispatch.enter_scope(scope)
            ops = _native.set_thread_ops(bit)
            bypass = _native.set_thread_bypass(False)
            counting = _native.set_thread_counting(False)
            try:
                return fn()
            finally:
                _native.set_thread_counting(counting)
                _native.set_thread_bypass(bypass)
                _native.set_thread_ops(ops)
                dispatch.leave_scope(token)
        return call

    try:
        yield as_served
    finally:
        _native.uninstall()


def active() -> bool:
    """Whether this thread routes natively."""
    return bool(getattr(_state, "stack", None))


# ---------------------------------------------------------------- deciding, in Python
_errors = threading.local()


def _pop_error() -> str:
    message, _errors.message = getattr(_errors, "message", ""), ""
    return message


def _slot(served: bool, op: str, name: str) -> int:
    slot = _slots.get((served, op, name))
    if slot is None:
        if len(_slots) >= _native.MAX_COUNTERS:
            return _NO_COUNTER
        slot = _slots[(served, op, name)] = len(_slots)
    return slot


def _route(op: str, func):
    """The function mode's own route of ``func`` for ``op`` (``OpSpec.routes``)."""
    return op_registry.spec(op).routes[func].route


def _gemm_verdict(a, b):
    return _route("gemm", torch.mm if a.dim() == 2 else torch.bmm)(_Devices, a, b)


def _attention_verdict(q, k, v, mask, dropout_p: float, causal: bool, scale):
    if causal and q.shape[2] != k.shape[2]:
        return "is_causal with Sq != Sk (PyTorch aligns it top-left)"
    return _route("attention", F.scaled_dot_product_attention)(
        _Devices, q, k, v, mask, dropout_p, causal, scale, True)


def verdict(func, args: tuple, kwargs: dict):
    """The route's verdict on a CPU call ``func(*args, **kwargs)`` of an aten operator it
    takes (``aten.mm``, ``bmm``, ``_scaled_dot_product_flash_attention_for_cpu``,
    ``_scaled_mm``, ``_int_mm``): a :class:`~hetero.routing.Call` of hetero's operator,
    or why PyTorch computes it (for :func:`hetero.explain`)."""
    aten = torch.ops.aten
    if func in (aten.mm.default, aten.bmm.default):
        return _gemm_verdict(*args)
    if func is aten._scaled_dot_product_flash_attention_for_cpu.default:
        q, k, v, *rest = args
        dropout_p = rest[0] if rest else kwargs.get("dropout_p", 0.0)
        causal = rest[1] if len(rest) > 1 else kwargs.get("is_causal", False)
        return _attention_verdict(q, k, v, kwargs.get("attn_mask"), dropout_p, causal,
                                  kwargs.get("scale"))
    torch_function = torch._int_mm if func is aten._int_mm.default else torch._scaled_mm
    route = op_registry.spec("scaled_gemm").routes[torch_function]
    bound = bind(args, kwargs, route.names, route.defaults)
    return "unsupported arguments" if bound is None else route.route(_Devices, *bound)


def thread_ops() -> frozenset[str]:
    """The ops this thread routes natively (empty when it routes none)."""
    stack = getattr(_state, "stack", None)
    return stack[-1][1] if stack else frozenset()


def _decision(op: str, name: str, verdict, training: bool = False) -> int:
    """``counter * 4 + action`` for a call the function mode's route turned into
    ``verdict`` (a :class:`~hetero.routing.Call` or why PyTorch computes it)."""
    if not isinstance(verdict, Call):
        why = verdict or "arguments the function mode's route leaves to PyTorch"
        return _slot(False, op, f"{name}: {why}") * 4 + TORCH
    with dispatch.served_natively(), dispatch.training() if training else nullcontext():
        key, record = verdict.prepare()
        kernel, why = torch_ops.decide(key, record)
    if kernel is None:
        return _slot(False, op, why) * 4 + TORCH
    if kernel.qualname in _NATIVE_KERNELS[op]:
        return _slot(True, op, kernel.qualname) * 4 + NATIVE
    if kernel.backend == TORCH_BACKEND:
        return _slot(True, op, kernel.qualname) * 4 + TORCH
    if op == "gemm":
        return _NO_COUNTER * 4 + PYTHON  # hetero_route::run_gemm counts it
    return _slot(False, op, f"{kernel.qualname} runs in Python: the native route runs "
                            "native and PyTorch kernels only") * 4 + TORCH


def _native_entry(on_error):
    """A Python op the native side calls: it runs with the route bypassed, and an
    exception's message is stashed for the native side to raise. ``on_error``: what to
    return instead (the decide ops' ``-1``), or ``None`` to re-raise."""
    def wrap(fn):
        def entry(*args):
            try:
                with torch_ops.plain_torch():
                    return fn(*args)
            except Exception as exc:  # noqa: BLE001 - carried to the caller by the native side
                _errors.message = f"{type(exc).__name__}: {exc}"
                if on_error is None:
                    raise
                return on_error
        return entry
    return wrap


_decide_entry = _native_entry(-1)  # a decide op answers -1 on failure
_run_entry = _native_entry(None)  # a run op raises


def _bucket_wide(op: str) -> int:
    """``BUCKET_WIDE`` where ``op``'s decisions depend on a call's sizes only through the
    tuned table's bucket (no kernel of it limits sizes; the routes check shapes only for
    validity, and attention's causal alignment only for ``Sq == Sk``, which the native
    key keeps), else 0: the native side then keeps one decision per bucket."""
    return 0 if dispatch.wants_sizes[op] else _native.BUCKET_WIDE


@_decide_entry
def _decide_gemm(a: torch.Tensor, b: torch.Tensor) -> int:
    """The decision for ``a @ b`` (aten ``mm`` or ``bmm``)."""
    verdict = _gemm_verdict(a, b)
    return _decision("gemm", "mm" if a.dim() == 2 else "bmm", verdict) | _bucket_wide("gemm")


@_decide_entry
def _decide_attention(q, k, v, mask, has_mask: bool, dropout_p: float, causal: bool,
                      scale: float, has_scale: bool, backward: bool) -> int:
    """The decision for PyTorch's CPU flash attention forward (or its ``backward``)."""
    op = "attention_backward" if backward else "attention"
    verdict = _attention_verdict(q, k, v, mask if has_mask else None, dropout_p, causal,
                                 scale if has_scale else None)
    return _decision(op, "scaled_dot_product_attention", verdict, training=backward) \
        | _bucket_wide("attention")


@_run_entry
def _run_gemm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` on the kernel dispatch picks, a kernel written in Python, through
    hetero's torch bridge (counted there)."""
    key, record = _gemm_verdict(a, b).prepare()
    record = real_out(record)
    if torch_ops.serve(key, record, _flops(a, b)) is None:
        return a @ b  # PyTorch's kernel (plain_torch bypasses the route)
    return record.out


def _served_by_hetero_or_torch(func, args: tuple):
    """``func(*args)`` (``torch._int_mm`` or ``torch._scaled_mm``) as the function mode
    routes it: on hetero's kernel where dispatch picks one, else by PyTorch (its kernel
    directly: this runs bypassed); counted either way."""
    route = op_registry.spec("scaled_gemm").routes[func]
    verdict = route.route(_Devices, *args, None)  # no out=: the native side copies into it
    kernel = why = None
    if isinstance(verdict, Call):
        key, record = verdict.prepare()
        kernel, why = torch_ops.decide(key, record)
        if kernel is not None and kernel.backend != TORCH_BACKEND:
            return verdict.serve(kernel, record)
    result = func(*args)
    if kernel is not None:
        counters.record("scaled_gemm", kernel.qualname, route.flops(args, result), skipped=why)
    elif isinstance(verdict, Call) or verdict is not None:
        reason = why if isinstance(verdict, Call) else f"{func.__name__}: {verdict}"
        counters.record_fallback("scaled_gemm", reason, route.flops(args, result))
    return result


@_run_entry
def _run_int_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return _served_by_hetero_or_torch(torch._int_mm, (a, b))


@_run_entry
def _run_scaled_mm(a, b, scale_a, scale_b, bias, has_bias: bool, scale_result,
                   has_scale_result: bool, dtype_probe, has_out_dtype: bool,
                   use_fast_accum: bool) -> torch.Tensor:
    """``torch._scaled_mm``; the native side passes absent optionals as flags and the
    out dtype as an empty tensor of it."""
    return _served_by_hetero_or_torch(torch._scaled_mm, (
        a, b, scale_a, scale_b, bias if has_bias else None,
        scale_result if has_scale_result else None,
        dtype_probe.dtype if has_out_dtype else None, use_fast_accum))


def _flops(a, b) -> float:
    return 2.0 * a.shape[-2] * b.shape[-1] * a.shape[-1] * (a.shape[0] if a.dim() == 3 else 1)


def _define_ops() -> None:
    global _ops_defined, _library
    if _ops_defined:
        return
    _library = torch.library.Library("hetero_route", "DEF")
    _library.define("decide_gemm(Tensor a, Tensor b) -> int")
    _library.define("run_gemm(Tensor a, Tensor b) -> Tensor")
    _library.define("decide_attention(Tensor q, Tensor k, Tensor v, Tensor mask, bool has_mask, "
                    "float dropout_p, bool causal, float scale, bool has_scale, bool backward) "
                    "-> int")
    _library.define("run_int_mm(Tensor a, Tensor b) -> Tensor")
    _library.define("run_scaled_mm(Tensor a, Tensor b, Tensor scale_a, Tensor scale_b, "
                    "Tensor bias, bool has_bias, Tensor scale_result, bool has_scale_result, "
                    "Tensor dtype_probe, bool has_out_dtype, bool use_fast_accum) -> Tensor")
    for name, fn in (("decide_gemm", _decide_gemm), ("run_gemm", _run_gemm),
                     ("decide_attention", _decide_attention), ("run_int_mm", _run_int_mm),
                     ("run_scaled_mm", _run_scaled_mm)):
        _library.impl(name, fn, "CPU")
    _ops_defined = True


# ---------------------------------------------------------------- counts and settings
def _counts():
    """``(served?, op, kernel or reason, calls, flops)`` of each native counter in use."""
    counts = _native.counts(len(_slots))
    return [(served, op, name, *counts[slot]) for (served, op, name), slot in _slots.items()
            if counts[slot][0]]


def _env_threads() -> int:
    return env.settings().num_threads or 0


@contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 for the block (the dispatcher's C++ warning)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
