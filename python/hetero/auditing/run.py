"""``hetero.audit``: run a model on a backend and find the calls that cost accuracy.

Four kinds of run, each on its own copy of the model (the user's model and inputs are
never modified):

1. the model in float64, plain PyTorch: the oracle for the output (and gradients);
2. the model in the audited dtype, plain PyTorch: the drift PyTorch itself has;
3. the same under :func:`hetero.enabled` on the audited backend, every routed call
   shadow-checked against its op's float64 reference (:mod:`.recorder`);
4. again, with the worst-ranked calls moved to the reference backend, to confirm
   the ranking: how much of the output drift goes away; and, for each op with calls
   out of bound, with every call of that op moved: which op explains the drift.

Cost: run 3 adds one float64 reference computation per checked call (``sample=N``
checks one call in N), and run 4 one model run per attribution step and per op
with calls out of bound (none when every call is within its bound).
"""

from __future__ import annotations

import copy
import time

import torch

from .. import enable as enabling
from .. import registry
from ..dispatch import use
from ..ops import registry as op_registry
from ..ops._checks import dtype_name
from ..progress import Progress
from .recorder import Recorder
from .report import AuditReport

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _check_inputs(inputs) -> dict:
    if isinstance(inputs, torch.Tensor):
        return {"input_ids": inputs}
    if isinstance(inputs, dict) and inputs and all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in inputs.items()):
        return dict(inputs)
    raise TypeError(f"inputs: expected a tensor of token ids or a dict of named tensors "
                    f"(the model's keyword arguments), got {type(inputs).__name__}")


def _check_backend(backend: str | None) -> None:
    if backend is None:
        return
    if not isinstance(backend, str):
        raise TypeError(f"backend: expected a backend's name, got {type(backend).__name__}")
    entry = registry.require(backend, "backend")
    if entry.reasons_unavailable():
        raise ValueError(f"backend: {backend!r} is unavailable here: "
                         f"{'; '.join(entry.reasons_unavailable())}")


def _order(backend: str | None) -> list[str]:
    """The audited backend, then PyTorch's own kernels for what it cannot serve (so the
    model runs, and the report lists those calls with the reason)."""
    if backend is None:
        return []  # the default order
    return [backend] if backend == "torch" else [backend, "torch"]


def _check_dtype(dtype) -> torch.dtype | None:
    if dtype is None or dtype in _DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in _DTYPES:
        return _DTYPES[dtype]
    raise ValueError(f"dtype: expected one of {list(_DTYPES)}, got {dtype!r}")


def _output(result) -> tuple[torch.Tensor, bool]:
    """The model's main output tensor, and whether it is logits."""
    for name in ("logits", "last_hidden_state"):
        value = getattr(result, name, None)
        if isinstance(value, torch.Tensor):
            return value, name == "logits"
    if isinstance(result, torch.Tensor):
        return result, False
    if isinstance(result, (tuple, list)) and result and isinstance(result[0], torch.Tensor):
        return result[0], False
    raise TypeError(f"model: its output {type(result).__name__} has no logits, "
                    f"last_hidden_state or leading tensor to audit")


def _run(model, inputs, dtype, train: bool):
    """``(output, is logits, gradients by parameter name or None)``; the model raising
    is reported as the model's failure."""
    floats = {k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()}
    try:
        with torch.enable_grad() if train else torch.no_grad():
            out, logits = _output(model(**floats))
            grads = None
            if train:
                out.double().square().mean().backward()
                grads = {n: p.grad.detach().double().clone()
                         for n, p in model.named_parameters() if p.grad is not None}
    except Exception as exc:  # noqa: BLE001 - whatever the model raises is the finding
        if isinstance(exc, TypeError) and str(exc).startswith("model:"):
            raise  # an output _output cannot read
        raise RuntimeError(f"model: raised {type(exc).__name__} on these inputs: {exc}") \
            from exc
    return out.detach().double(), logits, grads


def _drift(out: torch.Tensor, exact: torch.Tensor, logits: bool) -> dict:
    error = (out - exact).abs()
    agreement = None
    if logits and out.numel():
        agreement = float((out.argmax(-1) == exact.argmax(-1)).double().mean())
    return {"max_error": float(error.max()) if error.numel() else 0.0,
            "rms_error": float(error.square().mean().sqrt()) if error.numel() else 0.0,
            "top1_agreement": agreement}


def _gradient_errors(grads: dict, exact: dict) -> list[dict]:
    """Per parameter, ``max|g - g64| / max|g64|``, worst first."""
    return sorted(({"name": n, "relative_error": float(
        (grads[n] - g).abs().max() / g.abs().max().clamp_min(1e-300))}
        for n, g in exact.items() if n in grads), key=lambda g: -g["relative_error"])


def _attribute(report: AuditReport, steps, rerun, bar: Progress) -> None:
    """Re-run with the worst ``steps`` calls, then with every call of each op that has
    calls out of bound, on the reference backend (``rerun(moved keys) -> drift``), and
    record how much of the output drift each removes."""
    ranked, bad = report.checked(), report.out_of_bound()
    if steps is None:  # nothing to attribute when every call is within its bound
        steps = sorted({len(bad), min(1, len(bad)), min(5, len(ranked))}) if bad else []
    before = report.drift["hetero"]["rms_error"]

    def removed(after):
        return (1 - after / before) if before else None

    moves = [[c.key for c in ranked[:k]] for k in steps if ranked[:k]]
    guilty = sorted({c.op for c in bad})
    bar.total += len(moves) + len(guilty)
    for moved in moves:
        bar.step(f"again with the worst {len(moved)} calls on the reference backend")
        after = rerun(frozenset(moved))["rms_error"]
        report.attribution.append({"moved": moved, "rms_error": after,
                                   "removed": removed(after)})
    for op in guilty:  # which op explains the drift: all its calls moved at once
        bar.step(f"again with every {op} call on the reference backend")
        moved = frozenset(c.key for c in report.calls if c.op == op and c.shapes)
        after = rerun(moved)["rms_error"]
        report.by_op.append({"op": op, "moved": len(moved), "rms_error": after,
                             "removed": removed(after)})


def audit(model: torch.nn.Module, inputs, *, backend: str | None = None, dtype=None,
          ops=None, train: bool = False, sample: int = 1, steps=None,
          progress: bool = True, name: str | None = None) -> AuditReport:
    """Run ``model`` under :func:`hetero.enabled` on ``backend`` and say which calls cost
    accuracy.

    Args:
        model: a ``torch.nn.Module`` (a transformers model, or any module whose output
            is a tensor, a tuple led by one, or has ``logits``/``last_hidden_state``).
            Not modified: the audit runs copies.
        inputs: the model's keyword arguments as a dict of tensors, or a tensor of
            token ids (``input_ids``); float inputs are cast to each run's dtype.
        backend: the backend to audit (every routed call it can serve runs there; the
            rest are listed with the reason). ``None``: the default order.
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"`` (or the torch dtype) to run
            the model in; ``None``: the model's own.
        ops: the ops to shadow-check (``None``: every op with a reference).
        train: also run a backward pass and compare every parameter's gradient with
            the float64 model's.
        sample: check one routed call in ``sample`` (1: every call).
        steps: how many of the worst calls to move to the reference backend, one
            re-run each (default, when some call is out of its bound: that many, and
            the worst 1 and 5).
        progress: a progress line on stderr.
        name: what to call the model in the report (default: its class name).

    Returns:
        an :class:`AuditReport`; ``print(report.verdict)``, ``report.markdown()``,
        ``report.write_json(path)``, ``report.plot(path)``.

    Raises:
        TypeError, ValueError: bad arguments, naming the argument.
        RuntimeError: the model raised (the message says what); hetero is left as it was.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    inputs = _check_inputs(inputs)
    _check_backend(backend)
    dtype = _check_dtype(dtype)
    ops = None if ops is None else frozenset([ops] if isinstance(ops, str) else ops)
    unknown = sorted(set(ops or ()) - set(op_registry.list_ops()))
    if unknown:
        raise ValueError(f"ops: unknown {unknown}; registered: {op_registry.list_ops()}")
    if not isinstance(sample, int) or isinstance(sample, bool) or sample < 1:
        raise ValueError(f"sample: expected a positive int, got {sample!r}")

    started = time.perf_counter()
    work = copy.deepcopy(model).eval()
    if dtype is not None:
        work = work.to(dtype)
    dtype = next((p.dtype for p in work.parameters()), torch.float32)
    bar = Progress(3, enabled=progress)
    bar.step("the model in float64")
    exact, logits, exact_grads = _run(copy.deepcopy(model).eval().double(), inputs,
                                      torch.float64, train)
    bar.step(f"the model in {dtype_name(dtype)}, plain PyTorch")
    plain, _, _ = _run(copy.deepcopy(work), inputs, dtype, train)

    def on_backend(check, move=frozenset()):
        audited = copy.deepcopy(work)
        # The recorder reads each call's arguments, which the function mode hands over.
        with Recorder(audited, check=check, ops=ops, move=move) as recorder, \
                enabling.enabled(native=False), use(*_order(backend), policy="silent"):
            out, _, grads = _run(audited, inputs, dtype, train)
        return out, grads, recorder.calls

    bar.step(f"the model on {backend or 'the default backends'}, every call checked")
    out, grads, calls = on_backend(sample)
    report = AuditReport(name or type(model).__name__, backend or "default",
                         dtype_name(dtype), calls, {"torch": _drift(plain, exact, logits),
                                                    "hetero": _drift(out, exact, logits)},
                         sample=sample)
    if train:
        report.gradients = _gradient_errors(grads, exact_grads)
    _attribute(report, steps, lambda move: _drift(on_backend(0, move)[0], exact, logits), bar)
    bar.done()
    report.seconds = time.perf_counter() - started
    return report
