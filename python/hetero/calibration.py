"""Self-calibration: the first call of a shape bucket that asks for no backend measures
the kernels that can serve it — PyTorch's own (the ``torch`` backend) among them — on
this machine, and the tuned table keeps the fastest correct one, on disk, so later calls
and later processes dispatch from the measurement (:mod:`hetero.tuned`).

How one bucket is measured: the op's benchmark case of the same sizes
(``OpSpec.bench.case_of``) runs through the benchmark harness — every candidate checked
against float64 on a sample of its output (a wrong one is out), then timed interleaved
for at least :data:`ROUNDS` rounds and :data:`BUDGET_S` seconds each, on inputs of its
own. Calls the native route serves (:mod:`hetero.native_route`, CPU gemm and attention)
are decided by entries of their own, ``tuned.natively(op)``, measured as the route serves
them: PyTorch's call routed to each candidate in turn. The op's own calls on a CPU are
measured as a call naming no backend makes them, each candidate in turn held by a scope:
through the op's native entry where it has one (``hetero.native_entries``), else its
Python path. Either way every candidate pays the per-call cost the calls it will serve
pay (named by ``backend=``, every call takes the Python path, which charges hetero's
kernels for what the entry would not, and PyTorch's own call would be timed bare).

The cost is bounded: about ``ROUNDS + 1`` calls of each candidate (more only while
they stay within :data:`BUDGET_S`), plus the float64 check on a sample, once per
(device, op, dtype, bucket) and machine; :func:`cost` says what it has cost this
process, ``hetero info`` shows it, and ``HETERO_CALIBRATE=off`` stops it
(``HETERO_TUNED=off`` drops the table altogether).

A call autograd records (training, under :func:`hetero.enable`) of an op whose kernels
bring their own backward (attention) is decided by a measurement of forward and backward
together, kept under ``<op>+backward`` (:func:`hetero.tuned.with_backward`): a kernel
with a fast forward and a slow backward must not win a training step. It costs about as
many forward-and-backward steps as the forward measurement costs calls.

Nothing is measured while ``torch.compile`` traces, for a named backend (``backend=``,
``hetero.use``, ``HETERO_BACKENDS``), or for a call only one kernel can serve.
"""

from __future__ import annotations

import threading
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field, replace

from . import dispatch, native_route, tuned
from .bench import runner, timing, tune
from .bench.work import Inputs
from .errors import HeteroConfigWarning
from .ops import registry as op_registry

#: Timed rounds per candidate (each round calls every candidate once).
ROUNDS = 3
#: Seconds of timing per candidate beyond the minimum rounds.
BUDGET_S = 0.02


@dataclass
class Cost:
    """What calibration has cost this process: buckets measured, seconds spent, and the
    buckets whose measurement failed, with why."""

    buckets: int = 0
    seconds: float = 0.0
    failed: list[str] = field(default_factory=list)


_cost = Cost()
_lock = threading.RLock()
_busy = threading.local()  # the harness's own calls name their backend, but be sure


def cost() -> Cost:
    """A copy of what calibration has cost this process."""
    return Cost(_cost.buckets, _cost.seconds, list(_cost.failed))


def _participants(kernels) -> list[str] | None:
    """Backend names for the harness (the ``torch`` backend is its PyTorch baseline),
    or ``None`` when there is no choice to make."""
    names = [k.backend for k in kernels if k.backend != dispatch.REFERENCE]
    if len(names) < 2:
        return None
    return [n for n in names if n != "torch"] + [runner.TORCH]


def measure(traits, kernels, record, training: bool = False,
            native: bool = False) -> tuned.Entry | None:
    """Measure the bucket of ``traits`` on a case like ``record``'s among ``kernels``
    (those that can serve it) and add the winner to the tuned table, saved where the
    table lives. With ``training``, the candidates found correct are then timed forward
    and backward together (:func:`_measure_training`), and that entry is returned. With
    ``native``, they are timed as the native route serves them (:func:`_as_served`) and
    kept under ``tuned.natively(op)``. Returns the entry, or ``None`` when nothing was
    measured."""
    if native and _as_served(traits) is None:
        return None  # the route does not serve this op here: the plain entry decides
    spec = op_registry.spec(traits.op)
    names = _participants(kernels)
    case = spec.bench.case_of(record) if spec.bench and spec.bench.case_of else None
    if names is None or case is None or getattr(_busy, "on", False):
        return None
    if training and spec.bench.training_step is None:
        return None
    table = dispatch.tuned_table()
    with _lock:
        _busy.on = True
        start = time.perf_counter()
        try:
            with _as_served(traits) if native else nullcontext() as served:
                timed_as = (lambda work, name: served(work.torch_call, name)) if native \
                    else _as_called(spec) if traits.device.type == "cpu" else None
                rows = runner.measure_case(case, str(traits.dtype).removeprefix("torch."),
                                           traits.device, names, budget_s=BUDGET_S,
                                           min_rounds=ROUNDS, timed_as=timed_as)
            allowed = {k.qualname for k in kernels}
            rows = [r for r in rows if tune.row_kernel(r) in allowed]
            found = tune.table_from_runs([{"rows": rows}])
            entries = [replace(e, op=tuned.natively(e.op)) if native else e
                       for e in found.entries.values()]
            if training:
                correct = {tune.row_kernel(r) for r in rows if r["status"] == "ok"}
                entries.append(_measure_training(
                    spec, case, traits, [k for k in kernels if k.qualname in correct]))
        except Exception as exc:  # never fatal: the default order serves the call
            _cost.failed.append(f"{traits.op} {case.label}: {type(exc).__name__}: {exc}")
            return None
        finally:
            _busy.on = False
            _cost.seconds += time.perf_counter() - start
        _cost.buckets += 1
        entries = [e for e in entries if e is not None]
        if not entries:
            return None
        for entry in entries:
            table.add(entry)
        if table.path is not None:
            try:
                table.save(table.path)
            except OSError as exc:
                warnings.warn(f"tuned table {table.path} cannot be written ({exc}); the "
                              f"measurement is kept for this process", HeteroConfigWarning,
                              stacklevel=2)
        return entries[-1]


def _as_served(traits):
    """Where the native route serves the op's CPU calls, its :func:`serving
    <hetero.native_route.serving>` (candidates timed as PyTorch's call routed to each,
    at the route's per-call cost); else ``None``."""
    if traits.device.type != "cpu" or traits.op not in native_route.SERVED_NATIVELY \
            or native_route.unavailable() is not None:
        return None
    return native_route.serving(traits.op)


def _as_called(spec):
    """``as_called(work, backend) -> call``: the op's function called on ``work`` as a
    user calls it, naming no backend, with dispatch held to ``backend`` (``torch``:
    the ``torch`` backend's kernel) by a scope, so an op's native entry serves it where
    it can."""
    def as_called(work, backend: str):
        scope = dispatch.Scope((backend,), None)
        function, args, kwargs = spec.function, work.args, work.kwargs

        def call():
            token = dispatch.enter_scope(scope)
            try:
                return function(*args, **kwargs)
            finally:
                dispatch.leave_scope(token)
        return call
    return as_called


def _measure_training(spec, case, traits, kernels) -> tuned.Entry | None:
    """The fastest of ``kernels`` (found correct on the forward) at a forward and
    backward of ``case``, timed interleaved like the forward; PyTorch's own kernel runs
    its autograd backward, a hetero kernel its own (one without is left out: its
    backward would be the float64 reference). Timed on a thread of its own: the native
    route decides from inside PyTorch's kernels, below autograd, where no step could
    record its graph."""
    steps = {k.qualname: spec.bench.training_step(case, traits.dtype, traits.device,
                                                   Inputs(), k)
             for k in kernels if k.backward is not None or k.backend == runner.TORCH}
    if not steps:
        return None

    def timed():
        for step in steps.values():
            step()  # warm-up, as the forward's check was
        return timing.interleaved(list(steps.values()), traits.device, budget_s=BUDGET_S,
                                  min_rounds=ROUNDS)

    samples = _on_a_thread_of_its_own(timed)
    ranked = tune.torch_keeps(sorted(((name, s.median, 1) for name, s in zip(steps, samples)),
                                     key=lambda row: row[1]))
    (kernel, seconds, _), second = ranked[0], ranked[1] if len(ranked) > 1 else (None, None, 1)
    return tuned.Entry(tuned.device_name(traits.device), tuned.with_backward(traits.op),
                       str(traits.dtype).removeprefix("torch."), tuple(traits.bucket),
                       kernel, seconds, second[0], second[1])


def _on_a_thread_of_its_own(fn):
    """``fn()`` run on a new thread (fresh dispatcher and autograd state), its exception
    raised here."""
    outcome = {}

    def run():
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - raised again on the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="hetero-calibration")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


dispatch.calibrator = measure
