"""Running the suite: cases in a child process (so a segfault or a hang becomes a Crash
row, not a dead run), the verdict, and the report.

Verdicts (as a conformance test's are read: nothing is green that did not run):

- **not run**: the backend is unavailable here (its probe's reasons are the report);
- **not conformant**: some case failed or crashed;
- **incomplete**: nothing failed, but something the backend declares (a dtype, a
  feature, an end of a limit) was never exercised by a passing case, or no numeric
  case ran at all;
- **conformant**: every case passed or was refused by the backend's declaration, and
  every declared item was exercised;
- **partial**: one shard of the sweep (``shard=(I, N)``) without failures; the verdict
  belongs to the merged shards (:mod:`.merge`, ``hetero report``).

The child is one long-lived worker: the parent sends a case, waits up to ``timeout``
seconds for its verdict, and when the worker dies or hangs records a Crash for that
case, starts a new worker and goes on.
"""

from __future__ import annotations

import hashlib
import importlib
import multiprocessing
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata

import torch

from .. import registry, shards
from ..ops import registry as op_registry
from ..progress import Progress
from . import declared
from .cases import VERSION, Case, all_cases, case_hash
from .checks import CRASH, FAIL, NOT_SUPPORTED, NOTHING, PASS, judge

STATUSES = (PASS, NOT_SUPPORTED, FAIL, CRASH)
CONFORMANT, NOT_CONFORMANT, INCOMPLETE, NOT_RUN, PARTIAL = \
    "conformant", "not conformant", "incomplete", "not run", "partial"
#: ``hetero conformance``'s exit status per verdict.
EXIT_STATUS = {CONFORMANT: 0, NOT_CONFORMANT: 1, NOT_RUN: 2, INCOMPLETE: 3, PARTIAL: 0}


@dataclass
class Result:
    case: Case
    status: str
    detail: str
    seconds: float
    exercised: frozenset = NOTHING  # the declared items a Pass exercised


@dataclass
class Report:
    """The outcome of a run; :attr:`verdict` says what it means (module docstring).

    ``declared_items``: the backend's declared items (:mod:`.declared`); ``unavailable``: why
    the backend could not run here (then there are no results); ``shard``: ``(I, N)``
    when this run is one shard of the sweep whose case ids are ``all_case_ids``.
    """

    backend: str
    quick: bool
    results: list[Result]
    environment: dict = field(default_factory=dict)
    declared_items: list[declared.Item] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)
    shard: tuple[int, int] | None = None
    all_case_ids: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return {s: sum(r.status == s for r in self.results) for s in STATUSES}

    @property
    def coverage(self) -> dict:
        """Declared items, how many a passing case exercised, and which it did not."""
        exercised = set().union(*(r.exercised for r in self.results))
        return declared.coverage(self.declared_items, exercised)

    @property
    def verdict(self) -> str:
        if self.unavailable:
            return NOT_RUN
        if not all(r.status in (PASS, NOT_SUPPORTED) for r in self.results):
            return NOT_CONFORMANT
        if self.shard is not None:
            return PARTIAL
        ran = any(r.status == PASS and r.case.kind == "numeric" for r in self.results)
        return CONFORMANT if ran and not self.coverage["missing"] else INCOMPLETE

    @property
    def conformant(self) -> bool:
        return self.verdict == CONFORMANT

    def failures(self) -> list[Result]:
        return [r for r in self.results if r.status in (FAIL, CRASH)]

    def as_dict(self) -> dict:
        cases = [r.case for r in self.results]
        return {"suite_version": VERSION, "case_hash": case_hash(cases),
                "backend": self.backend, "quick": self.quick, "verdict": self.verdict,
                "unavailable": self.unavailable, "counts": self.counts,
                "coverage": self.coverage, "derived_seed": declared.seed(self.backend),
                "declared_items": [i.label for i in self.declared_items],
                "shard": shards.label(self.shard),
                **({"all_case_hash": hashlib.sha256("\n".join(
                    self.all_case_ids).encode()).hexdigest(),
                    "all_case_ids": self.all_case_ids} if self.shard else {}),
                "environment": self.environment,
                "results": [{**r.case.as_dict(), "status": r.status, "detail": r.detail,
                             "seconds": round(r.seconds, 4),
                             "exercised": sorted(i.label for i in r.exercised)}
                            for r in self.results]}

    def markdown(self) -> str:
        d = self.as_dict()
        lines = [f"# Conformance: `{self.backend}` — **{d['verdict']}**", ""]
        environment = "Environment: " + ", ".join(f"{k} {v}"
                                                  for k, v in self.environment.items())
        if self.unavailable:
            lines += ["The backend is unavailable here, so nothing was run:", ""]
            return "\n".join(lines + [f"- {reason}" for reason in self.unavailable] +
                             ["", environment]) + "\n"
        derived = sum(r.case.origin == "declared" for r in self.results)
        cover = d["coverage"]
        if not any(r.status == PASS and r.case.kind == "numeric" for r in self.results):
            covered = "No numeric case ran a kernel."
        else:
            covered = (f"Coverage of the declared support: {cover['exercised']} of "
                       f"{cover['declared']} items exercised by a passing case" +
                       (f"; never exercised: {', '.join(cover['missing'])}."
                        if cover["missing"] else "."))
        if self.shard is not None:
            lines += [f"Shard {shards.label(self.shard)} of {len(self.all_case_ids)} cases: "
                      "merge the shards' JSON with `hetero report` for the verdict.", ""]
        lines += [f"Suite {VERSION} ({'quick' if self.quick else 'full'}), case list sha256 "
                  f"`{d['case_hash'][:16]}`, {len(self.results) - derived} core and "
                  f"{derived} derived from the declared support (seed {d['derived_seed']}); " +
                  ", ".join(f"{n} {s}" for s, n in self.counts.items()) + ".", "",
                  covered, "", environment, ""]
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

    def run(self, case: Case, backend: str, timeout: float) -> tuple[str, str, frozenset]:
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
            return CRASH, f"hung: no verdict within {timeout:g} s", NOTHING
        self.process.join(30)
        code = self.process.exitcode
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return CRASH, f"the process died ({how})", NOTHING

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
            status, detail, exercised = judge(case, self.backend)
        else:
            if self._worker is None:
                self._worker = _Worker(self.plugins)
            status, detail, exercised = self._worker.run(case, self.backend, self.timeout)
            if status == CRASH:
                self._worker = None  # a fresh one for the next case
        return Result(case, status, detail, time.perf_counter() - start, exercised)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None


def run(backend: str, *, quick: bool = False, plugins=(), isolate: bool = True,
        timeout: float = 300, ops=None, progress: bool = True,
        shard: tuple[int, int] | None = None) -> Report:
    """Run the suite on ``backend`` and return the :class:`Report`: the core cases and
    the cases derived from the backend's declared support (:mod:`.declared`); nothing
    when the backend is unavailable here (verdict "not run").

    Args:
        backend: a registered backend name (``hetero info`` lists them).
        quick: the marked subset of the core, and fewer derived cases.
        plugins: ``"module:attribute"`` backends to register first.
        isolate: run cases in a worker process (Crash rows instead of a dead run).
        timeout: seconds a case may take before it counts as hung.
        ops: which ops' cases to run (default: every registered op's).
        progress: a progress line on stderr.
        shard: ``(I, N)``: run only that shard of the case list (:mod:`hetero.shards`).
    """
    load_plugins(plugins)
    entry = registry.require(backend, "backend")
    unknown = [op for op in ops or () if op_registry.get(op) is None]
    if unknown:
        raise ValueError(f"ops: no op named {unknown[0]!r} is registered "
                         f"(registered: {', '.join(op_registry.list_ops())})")
    items = [i for i in declared.declared_items(entry) if ops is None or i.op in ops]
    if entry.reasons_unavailable():
        return Report(backend, quick, [], environment(backend), items,
                      entry.reasons_unavailable())
    cases = all_cases(quick, None if ops is None else tuple(ops))
    cases += [c for c in declared.cases(entry, quick, cases) if ops is None or c.op in ops]
    all_ids = [c.id for c in cases] if shard is not None else []
    cases = shards.select(cases, shard)
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
    return Report(backend, quick, results, environment(backend), items, shard=shard,
                  all_case_ids=all_ids)
