"""Judging one case on one backend, in this process: Pass, NotSupported or Fail.

A numeric case asks dispatch first, exclusively for the backend and with the ``error``
policy. A case the backend's declared support does not cover must be refused by
dispatch with a reason (NotSupported); a covered case must pass every check:

1. the result lands in the ``out=`` given (poisoned with NaN first, so an element left
   unwritten fails), and a call without ``out=`` returns the same values;
2. values against the float64 reference: a float32/float64 GEMM by the K-aware rounding
   bound, low-precision results by the FlashAttention rule (twice PyTorch's own error in
   that dtype, plus a floor), float32/float64 attention by that rule with a K-aware
   floor ``(D + Sk + 8) u max|ref|``; NaN exactly where the reference has NaN;
3. inputs unchanged (bitwise);
4. a second run is bitwise identical.

A bad-input case must raise the expected exception with a message that starts with the
argument's name, before any kernel runs.
"""

from __future__ import annotations

import torch

import hetero

from ..ops import reference_attention, reference_gemm
from ..testing import (attention_error_bound, check_within, flash_rule_bound,
                       gemm_error_bound, poison_)
from .cases import Case
from .inputs import bad_input, numeric_inputs

PASS, NOT_SUPPORTED, FAIL, CRASH = "Pass", "NotSupported", "Fail", "Crash"


def _op(case: Case):
    return hetero.gemm if case.op == "gemm" else hetero.attention


def _same_bits(x: torch.Tensor, y: torch.Tensor) -> bool:
    return x.shape == y.shape and x.dtype == y.dtype and torch.equal(
        torch.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0),
        torch.nan_to_num(y, nan=0.0, posinf=1.0, neginf=-1.0)) and torch.equal(
        x.isnan(), y.isnan())


def _reference(case: Case, args, kwargs, compute_dtype):
    if case.op == "gemm":
        kw = {k: kwargs[k] for k in ("bias", "alpha", "beta") if k in kwargs}
        return reference_gemm(*args, **kw, compute_dtype=compute_dtype)
    kw = {k: v for k, v in kwargs.items() if k != "out"}
    return reference_attention(*args, **kw, compute_dtype=compute_dtype)


def _check_values(case: Case, result: torch.Tensor, args, kwargs) -> None:
    exact = _reference(case, args, kwargs, torch.float64)
    if case.op == "gemm" and result.dtype in (torch.float32, torch.float64):
        kw = {k: kwargs[k] for k in ("bias", "alpha", "beta") if k in kwargs}
        check_within(result, exact, gemm_error_bound(*args, **kw, out_dtype=result.dtype))
    else:
        baseline = _reference(case, args, kwargs, result.dtype).to(result.dtype)
        seen = exact.isfinite()  # the bound comes from the finite elements
        if case.op == "attention":
            bound = attention_error_bound(exact[seen], baseline[seen], case.params["D"],
                                          case.params["Sk"])
        else:
            bound = flash_rule_bound(exact[seen], baseline[seen])
        check_within(result, exact, bound)


def judge_numeric(case: Case, backend: str) -> tuple[str, str]:
    args, kwargs = numeric_inputs(case)
    op = _op(case)
    decision = hetero.explain(case.op, *args, **kwargs, backend=backend)
    if decision.chosen is None:
        reasons = "; ".join(r for c in decision.candidates for r in c.reasons)
        try:
            with hetero.use(policy="error"):
                op(*args, **kwargs, backend=backend)
        except hetero.DispatchError:
            return NOT_SUPPORTED, reasons
        return FAIL, f"declared unsupported ({reasons}) but the call ran"
    saved = [t.clone() for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor)]
    out = kwargs.pop("out", None)
    if out is None:
        out = torch.empty_like(_reference(case, args, kwargs, torch.float64),
                               dtype=args[0].dtype)
    poison_(out)
    with hetero.use(policy="error"):
        result = op(*args, **kwargs, out=out, backend=backend)
        again = op(*args, **kwargs, out=torch.empty_like(out), backend=backend)
        fresh = op(*args, **kwargs, backend=backend) if out.dtype == args[0].dtype else None
    if result is not out:
        return FAIL, "out=: the result is not the tensor given"
    try:
        _check_values(case, out, args, kwargs)
    except AssertionError as exc:
        return FAIL, str(exc)
    now = [t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor)]
    if not all(_same_bits(x, y) for x, y in zip(saved, now)):
        return FAIL, "an input was modified"
    if not _same_bits(out, again):
        return FAIL, "not deterministic: a second run differs bitwise"
    if fresh is not None and not _same_bits(out, fresh):
        return FAIL, "the result without out= differs from the result with out="
    return PASS, f"ran {decision.chosen.qualname}"


def judge_bad_input(case: Case, backend: str) -> tuple[str, str]:
    args, kwargs = bad_input(case)
    expected = {"TypeError": TypeError, "ValueError": ValueError}[case.expect]
    try:
        _op(case)(*args, **kwargs, backend=backend)
    except expected as exc:
        if str(exc).startswith(f"{case.argument}:"):
            return PASS, str(exc)
        return FAIL, f"{case.expect} does not name {case.argument!r} first: {exc}"
    except Exception as exc:  # noqa: BLE001 - any other outcome is the finding
        return FAIL, f"expected {case.expect}, got {type(exc).__name__}: {exc}"
    return FAIL, f"expected {case.expect}, the call returned"


def judge(case: Case, backend: str) -> tuple[str, str]:
    """``(status, detail)`` for ``case`` on ``backend``; an exception from the backend
    is a Fail carrying its message."""
    try:
        if case.kind == "bad_input":
            return judge_bad_input(case, backend)
        return judge_numeric(case, backend)
    except Exception as exc:  # noqa: BLE001
        return FAIL, f"raised {type(exc).__name__}: {exc}"
