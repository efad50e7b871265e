"""Judging one case on one backend, in this process: Pass, NotSupported or Fail.

A numeric case asks dispatch first, exclusively for the backend and with the ``error``
policy. A case the backend's declared support does not cover must be refused by
dispatch with a reason (NotSupported); a covered case must pass every check:

1. the result lands in the ``out=`` given (poisoned with NaN first, so an element left
   unwritten fails), and a call without ``out=`` returns the same values;
2. values against the op's float64 reference, within the op's error bound
   (``OpSpec.error_bound``: gemm's K-aware rounding bound in float32/float64, the
   FlashAttention rule — twice PyTorch's own error in that dtype, plus a floor — for
   low precision); NaN exactly where the reference has NaN;
3. inputs unchanged (bitwise);
4. a second run is bitwise identical.

A bad-input case must raise the expected exception with a message that starts with the
argument's name, before any kernel runs.

A numeric Pass also says which declared items it exercised (:mod:`.declared`): the
dtype, features, traits and sizes dispatch saw.
"""

from __future__ import annotations

import torch

import hetero

from ..explain import explain
from ..ops import registry as op_registry
from ..testing import check_within, poison_
from .cases import Case
from .declared import Item, exercised_items

PASS, NOT_SUPPORTED, FAIL, CRASH = "Pass", "NotSupported", "Fail", "Crash"
NOTHING: frozenset[Item] = frozenset()  # exercised by a case that did not pass


def _same_bits(x: torch.Tensor, y: torch.Tensor) -> bool:
    if x.shape != y.shape or x.dtype != y.dtype:
        return False
    if x.element_size() == 1:  # fp8 (no arithmetic on the CPU) and int8: the bytes
        return torch.equal(x.view(torch.uint8), y.view(torch.uint8))
    return torch.equal(
        torch.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0),
        torch.nan_to_num(y, nan=0.0, posinf=1.0, neginf=-1.0)) and torch.equal(
        x.isnan(), y.isnan())


def judge_numeric(case: Case, backend: str) -> tuple[str, str, frozenset[Item]]:
    spec = op_registry.spec(case.op)
    args, kwargs = spec.conformance.inputs(case)
    decision = explain(case.op, *args, **kwargs, backend=backend)
    if decision.chosen is None:
        reasons = "; ".join(r for c in decision.candidates for r in c.reasons)
        try:
            with hetero.use(policy="error"):
                spec.function(*args, **kwargs, backend=backend)
        except hetero.DispatchError:
            return NOT_SUPPORTED, reasons, NOTHING
        return FAIL, f"declared unsupported ({reasons}) but the call ran", NOTHING
    _, record = spec.bind(*args, **kwargs)  # the output's shape and dtype
    out = kwargs.pop("out", None)
    saved = [t.clone() for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor)]
    if out is None:
        out = torch.empty_like(record.out)
    poison_(out)
    with hetero.use(policy="error"):
        result = spec.function(*args, **kwargs, out=out, backend=backend)
        again = spec.function(*args, **kwargs, out=torch.empty_like(out), backend=backend)
        fresh = (spec.function(*args, **kwargs, backend=backend)
                 if out.dtype == args[0].dtype else None)
    if result is not out:
        return FAIL, "out=: the result is not the tensor given", NOTHING
    try:
        exact = spec.reference(record, torch.float64)
        check_within(out, exact, spec.error_bound(record, exact))
    except AssertionError as exc:
        return FAIL, str(exc), NOTHING
    now = [t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor)]
    if not all(_same_bits(x, y) for x, y in zip(saved, now)):
        return FAIL, "an input was modified", NOTHING
    if not _same_bits(out, again):
        return FAIL, "not deterministic: a second run differs bitwise", NOTHING
    if fresh is not None and not _same_bits(out, fresh):
        return FAIL, "the result without out= differs from the result with out=", NOTHING
    return PASS, f"ran {decision.chosen.qualname}", frozenset(
        exercised_items(case.op, decision.traits))


def judge_bad_input(case: Case, backend: str) -> tuple[str, str]:
    args, kwargs = op_registry.spec(case.op).conformance.bad_input(case)
    expected = {"TypeError": TypeError, "ValueError": ValueError}[case.expect]
    try:
        op_registry.spec(case.op).function(*args, **kwargs, backend=backend)
    except expected as exc:
        if str(exc).startswith(f"{case.argument}:"):
            return PASS, str(exc)
        return FAIL, f"{case.expect} does not name {case.argument!r} first: {exc}"
    except Exception as exc:  # noqa: BLE001 - any other outcome is the finding
        return FAIL, f"expected {case.expect}, got {type(exc).__name__}: {exc}"
    return FAIL, f"expected {case.expect}, the call returned"


def judge(case: Case, backend: str) -> tuple[str, str, frozenset[Item]]:
    """``(status, detail, exercised)`` for ``case`` on ``backend``: ``exercised`` the
    declared items a numeric Pass exercised (else empty). An exception from the backend
    is a Fail carrying its message."""
    try:
        if case.kind == "bad_input":
            return (*judge_bad_input(case, backend), NOTHING)
        return judge_numeric(case, backend)
    except Exception as exc:  # noqa: BLE001
        return FAIL, f"raised {type(exc).__name__}: {exc}", NOTHING
