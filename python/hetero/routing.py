"""How :func:`hetero.enable` recognises the PyTorch calls an op replaces: each op lists
its ``routes`` (``OpSpec.routes``: ``{torch function: Route}``), built from the helpers
here.

A route takes the routing mode (``mode.devices``: the device types enabled) and the
call's arguments bound to its parameter names, and returns a :class:`Call` of one of
hetero's torch operators (hetero serves the call), a reason (PyTorch serves it, counted
in :func:`hetero.stats`) or ``None`` (PyTorch serves it uncounted: arguments it will
reject itself, so errors stay PyTorch's own).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch

from . import counters
from .ops import registry as op_registry
from .ops._checks import FLOAT_DTYPES, real_out

_FLOAT = frozenset(FLOAT_DTYPES)


class Route(NamedTuple):
    """How one PyTorch function is routed: the hetero op it becomes (as counted), the
    route, the parameter names (and defaults) its arguments bind to, and
    ``flops(args, result)``: the work of a call PyTorch computed, for the counters."""

    op: str
    route: Callable
    names: tuple[str, ...]
    defaults: dict
    flops: Callable


class BridgeOp(NamedTuple):
    """One of hetero's torch operators, as routes call it: ``run(*args)`` is the operator
    (``torch.ops.hetero.<op>``), ``prepare(*args)`` the dispatch key and record of the
    same call (the op's ``prepare`` with ``out=STAND_IN``: no output is allocated
    until a kernel runs), so the routing mode can see which kernel will serve it;
    ``result(record)`` what the operator returns, from a served record (its ``out``)."""

    run: Callable
    prepare: Callable
    result: Callable = lambda record: record.out  # what ``run`` returns, from a record


class Call(NamedTuple):
    """A PyTorch call translated into ``op.run(*args)``; ``finish`` (if any) turns the
    operator's result into what the PyTorch call returns (a reshape)."""

    op: BridgeOp
    args: tuple
    finish: Callable | None = None

    def prepare(self) -> tuple:
        return self.op.prepare(*self.args)

    def run(self):
        """The call through the torch operator (with its autograd)."""
        return self._finished(self.op.run(*self.args))

    def serve(self, kernel, record):
        """The call by ``kernel`` on its ``record`` straight away (no autograd to
        record), counted as the operator counts it."""
        record = real_out(record)  # prepare's record holds a stand-in output
        kernel.fn(record)
        counters.record(kernel.op, kernel.qualname, op_registry.spec(kernel.op).flops(record),
                        record)
        return self._finished(self.op.result(record))

    def _finished(self, result):
        return result if self.finish is None else self.finish(result)


def tensors(*values) -> bool:
    """Whether every value is a tensor."""
    return all(isinstance(v, torch.Tensor) for v in values)


def real(x) -> bool:
    """Whether ``x`` is a python int or float (not a bool)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def unfit(mode, *operands) -> str | None:
    """Why hetero should not take these operands (``None``: it may): a dtype it does
    not serve, a device type not enabled, mixed dtypes or devices."""
    first = operands[0]
    if first.dtype not in _FLOAT:
        return f"dtype {str(first.dtype).removeprefix('torch.')} is not served"
    if first.device.type not in mode.devices:
        return f"device type {first.device.type!r} is not enabled"
    for t in operands[1:]:
        if t.dtype != first.dtype or t.device != first.device:
            return "operands of mixed dtypes or devices"
    return None


def bind(args, kwargs, names, defaults):
    """The call's arguments in ``names`` order, or ``None`` when it passes anything else
    (``out=``, an argument a newer PyTorch added): such calls stay with PyTorch."""
    if len(args) > len(names) or any(k not in names for k in kwargs):
        return None
    values = dict(defaults)
    values.update(zip(names, args))
    values.update(kwargs)
    if len(values) != len(names):
        return None
    return [values[n] for n in names]
