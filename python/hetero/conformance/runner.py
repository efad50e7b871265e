"""Running the suite: cases in a child process (so a segfault or a hang becomes a Crash
row, not a dead run), the verdict, and the report.

The child is one long-lived worker: the parent sends a case, waits up to ``timeout``
seconds for its verdict, and when the worker dies or hangs records a Crash for that
case, starts a new worker and goes on.
"""

from __future__ import annotations

import importlib
import multiprocessing
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata

import torch

from .. import registry
from ..ops import registry as op_registry
from ..progress import Progress
from .cases import VERSION, Case, all_cases, case_hash
from .checks import CRASH, FAIL, NOT_SUPPORTED, PASS, judge

STATUSES = (PASS, NOT_SUPPORTED, FAIL, CRASH)


@dataclass
class Result:
    case: Case
    status: str
    detail: str
    seconds: float


@dataclass
class Report:
    """The outcome of a run: ``conformant`` iff every case is Pass or NotSupported."""

    backend: str
    quick: bool
    results: list[Result]
    environment: dict = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        return {s: sum(r.status == s for r in self.results) for s in STATUSES}

    @property
    def conformant(self) -> bool:
        return all(r.status in (PASS, NOT_SUPPORTED) for r in self.results)

    def failures(self) -> list[Result]:
        return [r for r in self.results if r.status in (FAIL, CRASH)]

    def as_dict(self) -> dict:
        cases = [r.case for r in self.results]
        return {"suite_version": VERSION, "case_hash": case_hash(cases),
                "backend": self.backend, "quick": self.quick,
                "verdict": "conformant" if self.conformant else "not conformant",
                "counts": self.counts, "environment": self.environment,
                "results": [{**r.case.as_dict(), "status": r.status, "detail": r.detail,
                             "seconds": round(r.seconds, 4)} for r in self.results]}

    def markdown(self) -> str:
        d = self.as_dict()
        lines = [f"# Conformance: `{self.backend}` — **{d['verdict']}**", "",
                 f"Suite {VERSION} ({'quick' if self.quick else 'full'}), case list sha256 "
                 f"`{d['case_hash'][:16]}`; " +
                 ", ".join(f"{n} {s}" for s, n in self.counts.items()) + ".", "",
                 "Environment: " + ", ".join(f"{k} {v}" for k, v in self.environment.items()),
                 ""]
        failures = self.failures()
        if failures:
            lines += ["| case | status | detail |", "|---|---|---|"]
            lines += [f"| `{r.case.id}` | {r.status} | {r.detail[:300].replace('|', '/')} |"
                      for r in failures]
        unsupported = [r for r in self.results if r.status == NOT_SUPPORTED]
        if unsupported:
            lines += ["", f"{len(unsupported)} cases declared unsupported, for example:"]
            lines += [f"- `{r.case.id}`: {r.detail}" for r in unsupported[:10]]
        return "\n".join(lines) + "\n"


def environment(backend: str) -> dict:
    """Where the run happened: host, library versions, the backend's distribution."""
    from .. import __version__

    entry = registry.get(backend)
    versions = {}
    for dist in ("triton", "numpy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return {"python": platform.python_version(), "platform": platform.platform(),
            "machine": platform.machine(), "torch": torch.__version__, "hetero": __version__,
            **versions, "backend_source": entry.source if entry else None,
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def load_plugins(plugins) -> None:
    """Register backends and ops given as ``"module:attribute"`` — a backend object or an
    :class:`~hetero.ops.OpSpec` — not installed as entry points (in-development
    backends, new ops, test fixtures)."""
    for spec in plugins:
        module, _, attr = spec.partition(":")
        if not attr:
            raise ValueError(f"plugin: expected 'module:attribute', got {spec!r}")
        found = getattr(importlib.import_module(module), attr)
        if isinstance(found, op_registry.OpSpec):
            if op_registry.get(found.name) is None:
                op_registry.register_op(found)
        elif found.name not in registry.entries():
            registry.register(found)


def _worker(conn, plugins) -> None:
    load_plugins(plugins)
    while True:
        message = conn.recv()
        if message is None:
            return
        case, backend = message
        conn.send(judge(case, backend))


class _Worker:
    def __init__(self, plugins):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker, args=(child, list(plugins)), daemon=True)
        self.process.start()
        child.close()

    def run(self, case: Case, backend: str, timeout: float) -> tuple[str, str]:
        try:
            self.conn.send((case, backend))
            if self.conn.poll(timeout):
                return self.conn.recv()
            hung = True
        except (EOFError, BrokenPipeError, ConnectionResetError):
            hung = False  # the pipe closed: the worker is dying
        if hung:
            self.process.kill()
            self.process.join()
            return CRASH, f"hung: no verdict within {timeout:g} s"
        self.process.join(30)
        code = self.process.exitcode
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return CRASH, f"the process died ({how})"

    def close(self) -> None:
        if self.process.is_alive():
            try:
                self.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            self.process.join(5)
            if self.process.is_alive():
                self.process.kill()


class Session:
    """Judges cases one at a time, isolated in a worker process unless ``isolate`` is
    False (then a crash takes the caller down with it)."""

    def __init__(self, backend: str, plugins=(), isolate: bool = True, timeout: float = 300):
        self.backend, self.plugins, self.isolate, self.timeout = \
            backend, tuple(plugins), isolate, timeout
        self._worker: _Worker | None = None
        if not isolate:
            load_plugins(self.plugins)

    def judge(self, case: Case) -> Result:
        start = time.perf_counter()
        if not self.isolate:
            status, detail = judge(case, self.backend)
        else:
            if self._worker is None:
                self._worker = _Worker(self.plugins)
            status, detail = self._worker.run(case, self.backend, self.timeout)
            if status == CRASH:
                self._worker = None  # a fresh one for the next case
        return Result(case, status, detail, time.perf_counter() - start)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None


def run(backend: str, *, quick: bool = False, plugins=(), isolate: bool = True,
        timeout: float = 300, ops=None, progress: bool = True) -> Report:
    """Run the suite on ``backend`` and return the :class:`Report`.

    Args:
        backend: a registered backend name (``hetero info`` lists them).
        quick: the marked subset (272 of the 790 cases of suite 1.0).
        plugins: ``"module:attribute"`` backends to register first.
        isolate: run cases in a worker process (Crash rows instead of a dead run).
        timeout: seconds a case may take before it counts as hung.
        ops: which ops' cases to run (default: every registered op's).
        progress: a progress line on stderr.
    """
    load_plugins(plugins)
    if backend not in registry.entries():
        raise ValueError(f"backend: no backend named {backend!r} is installed "
                         f"(installed: {', '.join(sorted(registry.entries()))})")
    unknown = [op for op in ops or () if op_registry.get(op) is None]
    if unknown:
        raise ValueError(f"ops: no op named {unknown[0]!r} is registered "
                         f"(registered: {', '.join(op_registry.list_ops())})")
    cases = all_cases(quick, None if ops is None else tuple(ops))
    session = Session(backend, plugins, isolate, timeout)
    results = []
    counts = dict.fromkeys(STATUSES, 0)
    bar = Progress(len(cases), enabled=progress)
    try:
        for case in cases:
            results.append(session.judge(case))
            counts[results[-1].status] += 1
            bar.step(" ".join(f"{s} {n}" for s, n in counts.items()))
    finally:
        session.close()
        bar.done()
    return Report(backend, quick, results, environment(backend))
