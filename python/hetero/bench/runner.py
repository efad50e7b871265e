"""The sweep: every case, in every dtype, on every backend and PyTorch — checked, then
timed interleaved — into one self-describing result document.

For each (case, dtype) every participant first runs once into a NaN-poisoned output
and is judged against a float64 reference on a sample of the output, within the op's
bound: the op's :class:`~hetero.bench.work.Work` says which sample and which bound
(gemm: edge and random rows and columns, the K-aware rounding bound; attention: the
first and last batch element and head, the FlashAttention rule against SDPA). A
participant outside its bound is ``wrong``: still timed, so you see what it would cost,
but never ranked, never a speed-up, never tuned for.
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

import torch

from .. import dispatch, env, registry, shards, tuned
from ..explain import explain
from ..ops import registry as op_registry
from ..ops._checks import dtype_name
from ..progress import Progress
from ..testing import check_within, poison_
from . import machine, suites, timing, tune
from .work import TORCH, Inputs, Work

FORMAT = "hetero-bench/1"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
          "float64": torch.float64, "float8_e4m3fn": torch.float8_e4m3fn,
          "float8_e5m2": torch.float8_e5m2, "float8_e4m3fnuz": torch.float8_e4m3fnuz,
          "float8_e5m2fnuz": torch.float8_e5m2fnuz, "int8": torch.int8}
# What an op of quantised inputs (scaled_gemm) is measured in when none are named.
_QUANTIZED_DEFAULTS = ("float8_e4m3fn", "int8")
FORMULAS = {  # and "<op>_flops" from each op's BenchSpec
    "bytes": "minimum traffic: every operand read once and the result written once",
    "tflops": "flops / median_s / 1e12",
    "gbps": "bytes / median_s / 1e9",
    "pct_peak": "100 · tflops / the device's peak for the dtype",
    "pct_roofline": "100 · max(flops / peak, bytes / bandwidth) / median_s (bytes / bandwidth alone where the dtype has no peak)",
    "speedup": "PyTorch's median_s / this median_s (same inputs, same run)",
    "error": "max |out - float64 reference| over the checked sample; error_ratio = max of "
             "|out - ref| / bound (≤ 1 passes)",
    "cold_copies": "memory-bound rows on a CPU are timed on this many copies of the "
                   "operands in turn, together four times the last-level cache",
    "flag": "a row above 100% of the peak or roofline is a measurement error",
    "dispatch": "the kernel dispatch picks for the case after the run (the run's "
                "measurements calibrate it)",
}


@dataclass
class Plan:
    """What one ``hetero bench`` run measures (see :func:`plan`)."""

    op: str
    device: torch.device
    backends: list[str]
    dtypes: list[str]
    shapes: str
    quick: bool
    budget_s: float
    threads: int
    cases: list = field(default_factory=list)
    shard: tuple[int, int] | None = None
    all_cases: list = field(default_factory=list)  # the whole sweep's, when sharded


def default_backends(device: torch.device) -> list[str]:
    """Every available backend of the device's default order, except the oracle."""
    return [name for name in dispatch.default_order(device.type)
            if name != dispatch.REFERENCE and not registry.get(name).reasons_unavailable()]


def default_dtypes(backends: list[str], ops: list[str]) -> list[str]:
    """The dtypes the benchmarked ``backends`` (other than ``torch``) declare for
    ``ops``, float32 and the 16-bit ones, in that order (float64 only where nothing
    else is declared; float32 and bfloat16 when none declares any); then, for ops of
    quantised inputs, float8_e4m3fn and int8 where declared. Each op is measured in
    the dtypes it takes (:func:`op_dtypes`)."""
    declared = {dtype_name(dtype)
                for name in backends if name != TORCH and registry.get(name) is not None
                for op in ops for kernel in registry.get(name).kernels.get(op, ())
                for dtype in kernel.support.dtypes}
    chosen = [d for d in ("float32", "bfloat16", "float16") if d in declared]
    if not chosen:
        chosen = ["float64"] if "float64" in declared else ["float32", "bfloat16"]
    return chosen + [d for d in _QUANTIZED_DEFAULTS if d in declared]


def op_dtypes(p: Plan, op: str) -> list[str]:
    """The plan's dtypes that ``op`` takes (``OpSpec.dtypes``)."""
    taken = op_registry.spec(op).dtypes
    return [d for d in p.dtypes if DTYPES[d] in taken]


def plan(op: str = "all", *, device: str = "cpu", backends=None, dtypes=None,
         shapes: str = "llm", quick: bool = False, budget_s: float | None = None,
         shard: tuple[int, int] | None = None) -> Plan:
    """Validate a request. ``op``: an op with benchmark cases, or ``all``. ``backends``:
    names (``torch`` = the PyTorch baseline, always added); default
    :func:`default_backends`. ``dtypes``: names, default :func:`default_dtypes`.
    ``shapes``: a suite (``llm``, ``square``) or a JSON/YAML file
    (:func:`hetero.bench.suites.from_file`). ``budget_s``: seconds of timing per
    participant and case, beyond the minimum of 3 rounds (CPU) or 10 (GPU). ``shard``:
    ``(I, N)``, only that shard of the cases (:mod:`hetero.shards`)."""
    benchmarked = [s.name for s in op_registry.specs() if s.bench is not None]
    if op not in (*benchmarked, "all"):
        raise ValueError(f"op: expected one of {benchmarked} or all, got {op!r}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device: {device} requested but torch sees no CUDA/ROCm device")
    names = default_backends(dev) if backends is None else list(backends)
    for name in names:
        if name != TORCH:
            registry.require(name, "--backends")
    names = [n for n in names if n != TORCH] + [TORCH]
    ops = benchmarked if op == "all" else [op]
    dtypes = default_dtypes(names, ops) if dtypes is None else list(dtypes)
    for d in dtypes:
        if d not in DTYPES:
            raise ValueError(f"--dtypes: expected some of {sorted(DTYPES)}, got {d!r}")
    threads = env.settings().num_threads or torch.get_num_threads()
    budget = budget_s if budget_s is not None else (0.3 if dev.type == "cpu" else 0.2)
    found = [case for case in suites.cases(op, shapes, dev.type, quick)
             if any(DTYPES[d] in op_registry.spec(case.op).dtypes for d in dtypes)]
    if not found:
        raise ValueError(f"--shapes {shapes}: no {op} cases")
    return Plan(op, dev, names, dtypes, shapes, quick, budget, threads,
                shards.select(found, shard), shard, found if shard is not None else [])


# ---------------------------------------------------------------- calls and checks
def make_work(case, dtype: torch.dtype, device: torch.device,
              inputs: Inputs | None = None) -> Work:
    """The :class:`~hetero.bench.work.Work` of ``case`` in ``dtype`` (its op's)."""
    return op_registry.spec(case.op).bench.work(case, dtype, device, inputs or Inputs())


def call(case, work: Work, participant: str):
    """``fn(out=None)``: ``participant`` (a backend's name, or ``torch``) computing the
    case, into ``out`` when given."""
    if participant == TORCH:
        return work.torch_call
    function = op_registry.spec(case.op).function
    return lambda out=None: function(*work.args, **work.kwargs, out=out, backend=participant)


def poisoned_out(case, work: Work) -> torch.Tensor:
    """A NaN-filled output for the case: unwritten elements show."""
    _, record = op_registry.spec(case.op).bind(*work.args, **work.kwargs)
    return poison_(torch.empty_like(record.out))


def judge(row: dict, got: torch.Tensor, work: Work) -> None:
    """Fill ``error``, ``error_ratio`` and ``status`` (ok / wrong) of ``row`` from the
    result ``got``."""
    if got.numel() == 0:
        row.update(error=0.0, error_ratio=0.0, status="ok")
        return
    err = (got.double() - work.reference).abs().nan_to_num(nan=float("inf"))
    row["error"] = float(err.max())
    row["error_ratio"] = float((err / work.bound).max())
    try:
        check_within(got, work.reference, work.bound)
        row["status"] = "ok"
    except AssertionError as exc:
        row.update(status="wrong", reason=str(exc))


# ---------------------------------------------------------------- the sweep
def new_row(case, dtype: str, name: str, device_name: str) -> dict:
    params = {k: getattr(case, k) for k in case.__dataclass_fields__}
    return {"op": case.op, "case": case.label, "shape": case.shape, "name": case.name,
            "params": params, "bucket": list(case.bucket), "dtype": dtype, "backend": name,
            "kernel": TORCH if name == TORCH else None, "device_name": device_name,
            "status": None, "reason": "", "error": None, "error_ratio": None,
            "median_s": None, "p20_s": None, "p80_s": None, "samples": 0,
            "flops": case.flops, "bytes": case.min_bytes(DTYPES[dtype].itemsize),
            "tflops": None, "gbps": None, "pct_peak": None, "pct_roofline": None,
            "speedup": None, "rank": None, "flag": None, "dispatch": False}


def measure_case(case, dtype: str, device: torch.device, participants, *, budget_s: float,
                 peaks: machine.Peaks | None = None, inputs: Inputs | None = None,
                 device_name: str | None = None, min_rounds: int | None = None,
                 timed_as=None) -> list[dict]:
    """One (case, dtype): each participant (backend names, and ``torch``, the baseline)
    checked against float64, then timed interleaved for ``budget_s`` seconds beyond
    ``min_rounds`` (default 3 on a CPU, 10 on a GPU); the rows, ranked, with the
    metrics ``peaks`` allows. ``timed_as(work, backend) -> call | None``: time a
    participant as this call of the case's ``work`` served by ``backend`` (calibration
    on a CPU: as the native route or the op's native entry serves it) instead of
    through hetero's op function with the backend named, where it gives one."""
    work = make_work(case, DTYPES[dtype], device, inputs)
    device_name = device_name or tuned.device_name(device)
    peaks = peaks or machine.Peaks({}, None, "not measured")
    rows = {n: new_row(case, dtype, n, device_name) for n in participants}
    runnable = []
    for name, row in rows.items():
        if name != TORCH:
            decision = explain(case.op, *work.args, **work.kwargs, backend=name)
            if decision.chosen is None:
                row.update(status="unsupported", reason="; ".join(
                    r for c in decision.candidates for r in c.reasons))
                continue
            row["kernel"] = decision.chosen.qualname
        try:
            got = call(case, work, name)(poisoned_out(case, work))
            judge(row, work.pick(got), work)
        except Exception as exc:  # a crash in one participant must not end the sweep
            row.update(status="error", reason=f"{type(exc).__name__}: {exc}"[:500])
            continue
        runnable.append(name)
    works = [work] + [make_work(case, DTYPES[dtype], device, Inputs(copy=i))
                      for i in range(1, _cold_copies(case, dtype, device, peaks))]
    samples = timing.interleaved([_rotating(case, works, n, timed_as) for n in runnable], device,
                                 budget_s=budget_s, min_rounds=min_rounds or (
                                     3 if device.type == "cpu" else 10))
    for name, s in zip(runnable, samples):
        _metrics(rows[name], s, peaks)
        rows[name]["cold_copies"] = len(works)
    _rank(list(rows.values()))
    return list(rows.values())


#: Operand copies at most, and their bytes at most, for cold-cache timing on a CPU.
MAX_COLD_COPIES, MAX_COLD_BYTES = 32, 1 << 30


def _cold_copies(case, dtype: str, device: torch.device, peaks: machine.Peaks) -> int:
    """How many copies of the operands a memory-bound case (by the roofline) on a CPU is
    timed on, in turn: together four times the last-level cache, so that what one call
    reads is gone by the next (as a GPU's L2 is flushed) and a kernel pays for memory,
    as in a model whose weights do not stay cached between two uses. 1 for the rest.
    A dtype without a known peak counts as memory-bound (its roofline is bandwidth's)."""
    peak, bandwidth = peaks.for_dtype(dtype), peaks.tbytes_per_s
    nbytes = case.min_bytes(DTYPES[dtype].itemsize)
    if device.type != "cpu" or not bandwidth or nbytes == 0 \
            or (peak and nbytes / bandwidth <= case.flops / peak):
        return 1
    wanted = -(-4 * machine.last_level_cache_bytes() // int(nbytes))
    return max(1, min(wanted, MAX_COLD_COPIES, MAX_COLD_BYTES // int(nbytes)))


def case_id(case) -> str:
    """``op/label``: a case's name across shards and files."""
    return f"{case.op}/{case.label}"


def _rotating(case, works: list[Work], participant: str, timed_as=None):
    """The participant's call on each copy of the operands in turn."""
    calls = [(timed_as and timed_as(w, participant)) or call(case, w, participant)
             for w in works]
    if len(calls) == 1:
        return calls[0]
    turn = iter(range(1 << 62))
    return lambda: calls[next(turn) % len(calls)]()


def _metrics(row: dict, s: timing.Samples, peaks: machine.Peaks) -> None:
    median = s.median
    row.update(median_s=median, p20_s=s.p20, p80_s=s.p80, samples=len(s.seconds))
    if median <= 0:
        return
    row["tflops"] = row["flops"] / median / 1e12
    row["gbps"] = row["bytes"] / median / 1e9
    _percentages(row, peaks)


def _percentages(row: dict, peaks: machine.Peaks) -> None:
    """% of peak and of the roofline bound for a timed row (the memory bound alone where
    the dtype has no known peak), and the flag above 100%."""
    median = row["median_s"]
    row["flag"] = None
    peak = peaks.for_dtype(row["dtype"])
    if peak:
        row["pct_peak"] = 100 * row["tflops"] / peak
    if peaks.tbytes_per_s:
        floor = row["bytes"] / (peaks.tbytes_per_s * 1e12)
        if peak:
            floor = max(floor, row["flops"] / (peak * 1e12))
        row["pct_roofline"] = 100 * floor / median
    if max(row.get("pct_peak") or 0, row.get("pct_roofline") or 0) > 100:
        row["flag"] = "above 100% of the peak or roofline: a measurement error"


def _measures_bandwidth(p: Plan, peaks: machine.Peaks) -> bool:
    return p.device.type == "cpu" and peaks.source.startswith("measured")


def _bandwidth_again(p: Plan, peaks: machine.Peaks, rows: list[dict],
                     during: list[float] = ()) -> machine.Peaks:
    """On a CPU whose peaks were measured, measure the bandwidth again after the sweep
    and keep the best of that, the measurement before it and the readings ``during``
    it (bytes/s; a shared machine's bandwidth drifts by 10–50% within minutes, so one
    measurement can put a GEMV above its roofline); the rows' percentages follow."""
    if not _measures_bandwidth(p, peaks):
        return peaks
    after, _ = machine.measure_bandwidth(p.threads)
    later = max([after, *during])
    before = peaks.tbytes_per_s or 0.0
    if later / 1e12 <= before:
        return peaks
    peaks = replace(peaks, tbytes_per_s=later / 1e12, source=peaks.source + (
        f"; the best of {before * 1e3:.1f} GB/s before the sweep, "
        + (f"{max(during) / 1e9:.1f} in {len(during)} readings between its cases and "
           if during else "") + f"{after / 1e9:.1f} GB/s after"))
    for row in rows:
        if row.get("median_s"):
            _percentages(row, peaks)
    return peaks


def _rank(rows: list[dict]) -> None:
    """Speed-up vs PyTorch and rank (1 = fastest) among the correct participants."""
    ok = sorted((r for r in rows if r["status"] == "ok" and r["median_s"]),
                key=lambda r: r["median_s"])
    for i, r in enumerate(ok):
        r["rank"] = i + 1
    base = next((r for r in ok if r["backend"] == TORCH), None)
    for r in ok:
        if base is not None:
            r["speedup"] = base["median_s"] / r["median_s"]


def _calibrate(rows: list[dict]) -> None:
    """The run's measurements calibrate dispatch (unless calibration is off): each
    bucket's fastest correct kernel into the tuned table, replacing what it had."""
    table = dispatch.tuned_table()
    if not dispatch.calibrating() or not rows:
        return
    for entry in tune.table_from_runs([{"rows": rows}]).entries.values():
        table.add(entry)
    if table.path is not None:
        table.save(table.path)
    dispatch.set_tuned_table(table)  # decisions made before the run are forgotten


def _mark_dispatch(p: Plan, rows: list[dict], inputs: Inputs) -> None:
    """Mark, per (case, dtype), the row of the kernel dispatch now picks for it."""
    by_case = {}
    for r in rows:
        by_case.setdefault((r["op"], r["case"], r["dtype"]), []).append(r)
    for case in p.cases:
        for dtype in op_dtypes(p, case.op):
            work = make_work(case, DTYPES[dtype], p.device, inputs)
            chosen = explain(case.op, *work.args, **work.kwargs).chosen
            for r in by_case.get((case.op, case.label, dtype), ()):
                r["dispatch"] = chosen is not None and tune.row_kernel(r) == chosen.qualname


def run(p: Plan, *, progress: bool = True, command: list[str] | None = None) -> dict:
    """Run plan ``p``; returns the result document (see ``FORMAT``)."""
    device_name = tuned.device_name(p.device)
    started = time.perf_counter()
    bar = Progress(sum(len(op_dtypes(p, case.op)) for case in p.cases), enabled=progress)
    bar.note(f"measuring the peaks of {device_name}")
    peaks = machine.peaks(p.device, p.threads, p.backends)
    inputs = Inputs()
    rows: list[dict] = []
    # The bandwidth read again between cases (tens of ms each): the roofline is the
    # best the machine showed during the run, not one moment before it.
    probe = machine.BandwidthProbe(p.threads) if _measures_bandwidth(p, peaks) else None
    for case in p.cases:
        for dtype in op_dtypes(p, case.op):
            bar.step(f"{case.op} {case.label} {dtype}")
            rows += measure_case(case, dtype, p.device, p.backends, budget_s=p.budget_s,
                                 peaks=peaks, inputs=inputs, device_name=device_name)
            if probe is not None:
                probe.once()
    bar.done()
    readings = probe.readings if probe is not None else []
    del probe  # its arrays (hundreds of MiB), before the measurement after the sweep
    peaks = _bandwidth_again(p, peaks, rows, readings)
    _calibrate(rows)
    _mark_dispatch(p, rows, inputs)
    return {
        "format": FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(command if command is not None else sys.argv),
        "machine": machine.describe(p.device, p.threads),
        "peaks": peaks.as_dict(),
        "settings": {"op": p.op, "device": str(p.device), "backends": p.backends,
                     "dtypes": p.dtypes, "shapes": p.shapes, "quick": p.quick,
                     "shard": shards.label(p.shard),
                     **({"all_cases": [case_id(c) for c in p.all_cases],
                         "all_case_hash": hashlib.sha256("\n".join(
                             case_id(c) for c in p.all_cases).encode()).hexdigest()}
                        if p.shard else {}),
                     "budget_s": p.budget_s, "threads": p.threads},
        "formulas": {**{f"{s.name}_flops": s.bench.flops_formula for s in op_registry.specs()
                        if s.bench is not None}, **FORMULAS},
        "seconds": round(time.perf_counter() - started, 1),
        "rows": rows,
    }
