"""The sweep: every case, in every dtype, on every backend and PyTorch — checked, then
timed interleaved — into one self-describing result document.

For each (case, dtype) every participant first runs once into a NaN-poisoned output
and is judged against a float64 reference on a sample of the output: the first and
last 8 rows and columns (where edge tiles go wrong) plus 8 random ones of each for a
GEMM; the first and last batch element and head, all of their rows, for attention.
GEMM bound: :func:`hetero.testing.gemm_error_bound` (float32 accumulation, rounded
once to the output dtype). Attention bound: the FlashAttention rule against PyTorch's
SDPA in the same dtype, with a K-aware floor for float32
(:func:`hetero.testing.attention_error_bound`). A participant outside its bound is
``wrong``: still timed, so you see what it would cost, but never ranked, never a
speed-up, never tuned for.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import torch
import torch.nn.functional as F

from .. import dispatch, registry, tuned
from ..explain import explain
from ..ops import attention as hetero_attention
from ..ops import gemm as hetero_gemm
from ..ops import reference_attention
from ..progress import Progress
from ..testing import attention_error_bound, check_within, gemm_error_bound, poison_
from . import machine, suites, timing

TORCH = "torch"  # the baseline participant
FORMAT = "hetero-bench/1"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
          "float64": torch.float64}
FORMULAS = {
    "gemm_flops": "2·batch·M·N·K",
    "attention_flops": "4·B·Hq·D·pairs; pairs = Sq·Sk, or the (query, key) pairs a query "
                       "may see when causal (bottom-right aligned): about half for Sq = Sk",
    "bytes": "minimum traffic: every operand read once and the result written once",
    "tflops": "flops / median_s / 1e12",
    "gbps": "bytes / median_s / 1e9",
    "pct_peak": "100 · tflops / the device's peak for the dtype",
    "pct_roofline": "100 · max(flops / peak, bytes / bandwidth) / median_s",
    "speedup": "PyTorch's median_s / this median_s (same inputs, same run)",
    "error": "max |out - float64 reference| over the checked sample; error_ratio = max of "
             "|out - ref| / bound (≤ 1 passes)",
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


def default_backends(device: torch.device) -> list[str]:
    """Every available backend of the device's default order, except the oracle."""
    return [name for name in dispatch.default_order(device.type)
            if name != dispatch.REFERENCE and not registry.get(name).reasons_unavailable()]


def plan(op: str = "all", *, device: str = "cpu", backends=None, dtypes=None,
         shapes: str = "llm", quick: bool = False, budget_s: float | None = None) -> Plan:
    """Validate a request. ``backends``: names (``torch`` = the PyTorch baseline, always
    added); default :func:`default_backends`. ``dtypes``: names, default float32 and
    bfloat16. ``shapes``: ``llm``, ``square`` or a JSON/YAML file
    (:func:`hetero.bench.suites.from_file`). ``budget_s``: seconds of timing per
    participant and case, beyond the minimum of 3 rounds (CPU) or 10 (GPU)."""
    if op not in ("gemm", "attention", "all"):
        raise ValueError(f"op: expected gemm, attention or all, got {op!r}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device: {device} requested but torch sees no CUDA/ROCm device")
    names = default_backends(dev) if backends is None else list(backends)
    for name in names:
        if name != TORCH and registry.get(name) is None:
            raise ValueError(f"--backends: no backend named {name!r} is installed "
                             f"(installed: {', '.join(sorted(registry.entries()))})")
    names = [n for n in names if n != TORCH] + [TORCH]
    dtypes = ["float32", "bfloat16"] if dtypes is None else list(dtypes)
    for d in dtypes:
        if d not in DTYPES:
            raise ValueError(f"--dtypes: expected some of {sorted(DTYPES)}, got {d!r}")
    from ..backends.cpu import num_threads

    budget = budget_s if budget_s is not None else (0.3 if dev.type == "cpu" else 0.2)
    found = suites.cases(op, shapes, dev.type, quick)
    if not found:
        raise ValueError(f"--shapes {shapes}: no {op} cases")
    return Plan(op, dev, names, dtypes, shapes, quick, budget, num_threads(), found)


# ---------------------------------------------------------------- inputs and checks
def _sample(n: int, generator: torch.Generator, edge: int = 8, middle: int = 8) -> list[int]:
    """Indices to check: both edges and a few random ones in between."""
    if n <= 2 * edge + middle:
        return list(range(n))
    inner = torch.randperm(n - 2 * edge, generator=generator)[:middle] + edge
    return sorted({*range(edge), *range(n - edge, n), *inner.tolist()})


class Inputs:
    """float32 operands per (shape, seed), made once per run and cast per dtype."""

    def __init__(self):
        self._made: dict[tuple, torch.Tensor] = {}

    def get(self, shape: tuple[int, ...], seed: int) -> torch.Tensor:
        key = (shape, seed)
        if key not in self._made:
            gen = torch.Generator().manual_seed(seed)
            self._made[key] = torch.randn(shape, generator=gen)
        return self._made[key]


@dataclass
class Work:
    """One (case, dtype): the operands, each participant's calls, and what to judge a
    result by. ``check_call[name](out)`` runs into ``out`` (a poisoned tensor; PyTorch's
    attention ignores it) and returns the result; ``timed_call[name]()`` is the call as
    a user makes it; ``pick(result)`` is the checked sample, to compare with
    ``reference`` within ``bound``."""

    args: tuple
    check_call: dict  # participant -> fn(out or None) -> result tensor
    timed_call: dict  # participant -> fn() (allocating, as a user calls it)
    pick: object  # result -> the checked sample
    reference: torch.Tensor
    bound: object


def _gemm_work(case, dtype, device, inputs: Inputs, names) -> Work:
    lead = (case.batch,) if case.batch > 1 else ()
    x = inputs.get((*lead, case.m, case.k), 1).to(device, dtype)
    if case.layout == "x @ w.t()":
        w = inputs.get((*lead, case.n, case.k), 2).to(device, dtype).transpose(-1, -2)
    else:
        w = inputs.get((*lead, case.k, case.n), 2).to(device, dtype)
    gen = torch.Generator().manual_seed(3)
    rows, cols = _sample(case.m, gen), _sample(case.n, gen)
    batches = sorted({0, case.batch - 1})

    def sub(t, first, last):
        t = t[batches] if lead else t
        return t[..., first, :][..., :, last]

    xs, ws = sub(x, rows, slice(None)), sub(w, slice(None), cols)
    check, timed = {}, {}
    for name in names:
        if name == TORCH:
            check[name] = lambda out: torch.matmul(x, w, out=out)
            timed[name] = lambda: torch.matmul(x, w)
        else:
            check[name] = lambda out, n=name: hetero_gemm(x, w, out=out, backend=n)
            timed[name] = lambda n=name: hetero_gemm(x, w, backend=n)
    return Work((x, w), check, timed, lambda out: sub(out, rows, cols),
                 torch.matmul(xs.double(), ws.double()),
                 gemm_error_bound(xs, ws, out_dtype=dtype))


def torch_attention(q, k, v, causal: bool):
    """PyTorch's SDPA with hetero's meaning of ``causal`` (bottom-right aligned; PyTorch's
    ``is_causal`` is top-left when Sq != Sk) and GQA."""
    sq, sk = q.shape[2], k.shape[2]
    mask = None
    if causal and sq != sk:
        visible = torch.ones(sq, sk, dtype=torch.bool, device=q.device).tril(sk - sq)
        mask = None if bool(visible.all()) else visible
    is_causal = causal and sq == sk
    gqa = q.shape[1] != k.shape[1]
    return lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                                  enable_gqa=gqa)


def _attention_work(case, dtype, device, inputs: Inputs, names) -> Work:
    q = inputs.get((case.b, case.hq, case.sq, case.d), 1).to(device, dtype)
    k = inputs.get((case.b, case.hkv, case.sk, case.d), 2).to(device, dtype)
    v = inputs.get((case.b, case.hkv, case.sk, case.d), 3).to(device, dtype)
    batches, heads = sorted({0, case.b - 1}), sorted({0, case.hq - 1})
    kv_heads = [h // (case.hq // case.hkv) for h in heads]

    def pick(t, h=heads):
        return t[batches][:, h]

    qs, ks, vs = pick(q), pick(k, kv_heads), pick(v, kv_heads)
    reference = reference_attention(qs, ks, vs, causal=case.causal)
    baseline = torch_attention(qs, ks, vs, case.causal)()
    check, timed = {}, {}
    for name in names:
        if name == TORCH:
            timed[name] = sdpa = torch_attention(q, k, v, case.causal)
            check[name] = lambda out: sdpa()
        else:
            check[name] = lambda out, n=name: hetero_attention(q, k, v, causal=case.causal,
                                                               out=out, backend=n)
            timed[name] = lambda n=name: hetero_attention(q, k, v, causal=case.causal, backend=n)
    return Work((q, k, v), check, timed, pick, reference,
                 attention_error_bound(reference, baseline, case.d, case.sk))


def make_work(case, dtype: torch.dtype, device: torch.device, names,
              inputs: Inputs | None = None) -> Work:
    """The :class:`Work` of ``case`` in ``dtype`` for participants ``names``."""
    make = _gemm_work if case.op == "gemm" else _attention_work
    return make(case, dtype, device, inputs or Inputs(), names)


def poisoned_out(case, dtype, device) -> torch.Tensor:
    if case.op == "gemm":
        shape = ((case.batch,) if case.batch > 1 else ()) + (case.m, case.n)
    else:
        shape = (case.b, case.hq, case.sq, case.d)
    return poison_(torch.empty(shape, dtype=dtype, device=device))


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
            "speedup": None, "rank": None}


def _measure_case(p: Plan, case, dtype: str, inputs: Inputs, peaks: machine.Peaks,
                  device_name: str) -> list[dict]:
    torch_dtype = DTYPES[dtype]
    work = make_work(case, torch_dtype, p.device, p.backends, inputs)
    rows = {n: new_row(case, dtype, n, device_name) for n in p.backends}
    runnable = []
    for name, row in rows.items():
        if name != TORCH:
            kwargs = {"causal": case.causal} if case.op == "attention" else {}
            decision = explain(case.op, *work.args, **kwargs, backend=name)
            if decision.chosen is None:
                row.update(status="unsupported", reason="; ".join(
                    r for c in decision.candidates for r in c.reasons))
                continue
            row["kernel"] = decision.chosen.qualname
        try:
            got = work.check_call[name](poisoned_out(case, torch_dtype, p.device))
            judge(row, work.pick(got), work)
        except Exception as exc:  # a crash in one participant must not end the sweep
            row.update(status="error", reason=f"{type(exc).__name__}: {exc}"[:500])
            continue
        runnable.append(name)
    samples = timing.interleaved([work.timed_call[n] for n in runnable], p.device,
                                 budget_s=p.budget_s,
                                 min_rounds=3 if p.device.type == "cpu" else 10)
    for name, s in zip(runnable, samples):
        _metrics(rows[name], s, peaks)
    _rank(list(rows.values()))
    return list(rows.values())


def _metrics(row: dict, s: timing.Samples, peaks: machine.Peaks) -> None:
    median = s.median
    row.update(median_s=median, p20_s=s.p20, p80_s=s.p80, samples=len(s.seconds))
    if median <= 0:
        return
    row["tflops"] = row["flops"] / median / 1e12
    row["gbps"] = row["bytes"] / median / 1e9
    peak = peaks.for_dtype(row["dtype"])
    if peak:
        row["pct_peak"] = 100 * row["tflops"] / peak
        if peaks.tbytes_per_s:
            floor = max(row["flops"] / (peak * 1e12), row["bytes"] / (peaks.tbytes_per_s * 1e12))
            row["pct_roofline"] = 100 * floor / median


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


def run(p: Plan, *, progress: bool = True, command: list[str] | None = None) -> dict:
    """Run plan ``p``; returns the result document (see ``FORMAT``)."""
    device_name = tuned.device_name(p.device)
    started = time.perf_counter()
    bar = Progress(len(p.cases) * len(p.dtypes), enabled=progress)
    bar.note(f"measuring the peaks of {device_name}")
    peaks = machine.peaks(p.device, p.threads)
    inputs = Inputs()
    rows: list[dict] = []
    for case in p.cases:
        for dtype in p.dtypes:
            bar.step(f"{case.op} {case.label} {dtype}")
            rows += _measure_case(p, case, dtype, inputs, peaks, device_name)
    bar.done()
    return {
        "format": FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(command if command is not None else sys.argv),
        "machine": machine.describe(p.device, p.threads),
        "peaks": peaks.as_dict(),
        "settings": {"op": p.op, "device": str(p.device), "backends": p.backends,
                     "dtypes": p.dtypes, "shapes": p.shapes, "quick": p.quick,
                     "budget_s": p.budget_s, "threads": p.threads},
        "formulas": FORMULAS,
        "seconds": round(time.perf_counter() - started, 1),
        "rows": rows,
    }
