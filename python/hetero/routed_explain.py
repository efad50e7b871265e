"""``hetero.explain(torch_function, ...)``: what :func:`hetero.enable` would do with one
PyTorch call on this thread, and why.

The function mode sees the call as written, so its route (``OpSpec.routes``) turns it
into one of hetero's operators or a reason to leave it to PyTorch, and dispatch decides
the operator's call. The native route sees the aten operators the call reaches on the
CPU (``F.linear`` without a bias reaches ``aten::mm``; with one, ``aten::addmm``, which
is not routed; SDPA reaches PyTorch's flash kernel or, on its math path, ``bmm``s): those
are found by running the call under a torch dispatch mode whose routed operators compute
nothing (their outputs are zeros of the right shape; the other operators, views and
element-wise work, do run), and each is decided as the route decides it, by the
tuned table's ``@native`` entries.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

from . import dispatch, native_route
from .decision import Decision
from .enable import how_routed, records_autograd, routes
from .routing import Call, bind

_aten = torch.ops.aten
#: The aten operators the native route takes: those its CPU kernels replace.
_NATIVE_ATEN = frozenset({
    _aten.mm.default, _aten.bmm.default,
    _aten._scaled_dot_product_flash_attention_for_cpu.default,
    _aten._scaled_mm.default, _aten._int_mm.default,
})


@dataclass
class RoutedStep:
    """One call hetero's route sees: ``decision`` when one of hetero's operators takes
    it (dispatch then picks a kernel, or PyTorch's own where ``decision.chosen`` is
    ``None`` or the ``torch`` backend's), else ``left_to_pytorch``: why PyTorch computes
    it (``None`` with no decision: PyTorch's call, not counted)."""

    call: str
    decision: Decision | None = None
    left_to_pytorch: str | None = None

    def __str__(self) -> str:
        if self.decision is None:
            why = self.left_to_pytorch or "not counted"
            return f"{self.call}: PyTorch computes it ({why})"
        return f"{self.call}:\n" + _indented(str(self.decision))


@dataclass
class RoutedCall:
    """What :func:`hetero.enable` would do with one PyTorch call
    (:func:`hetero.explain` of a PyTorch function).

    ``route`` names the mechanism (``"the native route"`` or ``"the function mode"``),
    ``steps`` the calls it sees (one in the function mode; on the native route the aten
    operators the call reaches, none when it reaches none that is routed) and
    ``not_routed`` why nothing is, when that holds for the whole call.
    """

    function: str
    route: str
    steps: list[RoutedStep] = field(default_factory=list)
    not_routed: str | None = None

    @property
    def chosen(self) -> list:
        """The kernel each step runs (``None``: PyTorch's own call)."""
        return [s.decision.chosen if s.decision is not None else None for s in self.steps]

    def __str__(self) -> str:
        head = f"{self.function} under hetero.enable() ({self.route})"
        if self.not_routed is not None:
            return f"{head}: PyTorch computes it ({self.not_routed})"
        if not self.steps:
            return (f"{head}: reaches no operator the native route takes (aten mm, bmm, "
                    "the CPU flash attention, _scaled_mm, _int_mm); PyTorch computes it, "
                    "not counted")
        return f"{head}:\n" + "\n".join(_indented(str(s)) for s in self.steps)


def explain_call(function, *args, **kwargs) -> RoutedCall:
    """The decision :func:`hetero.enable` would make for ``function(*args, **kwargs)`` on
    this thread (:func:`hetero.enable.how_routed`). Decided afresh, as
    :func:`hetero.explain`; the arguments are not modified."""
    route = routes()[function]
    native, devices, not_routed = how_routed(route.op)
    result = RoutedCall(_qualified(function), "the native route" if native else
                        "the function mode", not_routed=not_routed)
    if not_routed is not None:
        return result
    if native:
        result.steps = _native_steps(function, args, kwargs)
        return result
    bound = bind(args, kwargs, route.names, route.defaults)
    verdict = "unsupported arguments (out=, ...)" if bound is None \
        else route.route(SimpleNamespace(devices=devices), *bound)  # what routes read
    training = isinstance(verdict, Call) and records_autograd(verdict.args)
    result.steps.append(_step(result.function, verdict, training=training))
    return result


def _step(call: str, verdict, *, native: bool = False, training: bool = False) -> RoutedStep:
    """The step for a route's ``verdict`` (a :class:`Call`, a reason, or ``None``)."""
    if not isinstance(verdict, Call):
        return RoutedStep(call, left_to_pytorch=verdict)
    with dispatch.served_natively() if native else dispatch.training() if training \
            else nullcontext():
        key, _ = verdict.prepare()
    return RoutedStep(call, decision=dispatch.decide(*dispatch.split_key(key)))


def _native_steps(function, args, kwargs) -> list[RoutedStep]:
    """The native route's steps: the routed aten operators ``function`` reaches."""
    capture = _Capture()
    with torch.no_grad(), capture:
        function(*args, **kwargs)
    return [_step(call, verdict, native=True) for call, verdict in capture.seen]


class _Capture(TorchDispatchMode):
    """Notes each CPU call of an operator the native route takes, with the route's
    verdict on it, and answers it with zeros (shaped on meta tensors);
    every other operator runs."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[str, object]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if func not in _NATIVE_ATEN or not tensors or tensors[0].device.type != "cpu":
            return func(*args, **kwargs)
        self.seen.append((f"aten.{func.__name__.removesuffix('.default')}"
                          f"{_shapes(tensors)}", native_route.verdict(func, args, kwargs)))
        meta = func(*tree_map(_to_meta, args), **tree_map(_to_meta, kwargs))
        return tree_map(_zeros_like_meta, meta)


def _to_meta(x):
    return x.to("meta") if isinstance(x, torch.Tensor) else x


def _zeros_like_meta(x):
    return torch.zeros_like(x, device="cpu") if isinstance(x, torch.Tensor) else x


def _shapes(tensors) -> str:
    return "(" + ", ".join(f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}"
                           for t in tensors) + ")"


def _qualified(function) -> str:
    """The name users call ``function`` by (``torch.nn.functional.linear``)."""
    name = getattr(function, "__name__", None)
    for prefix, namespace in (("torch.nn.functional", F), ("torch", torch),
                              ("torch.Tensor", torch.Tensor)):
        if name is not None and getattr(namespace, name, None) is function:
            return f"{prefix}.{name}"
    return str(function)


def _indented(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
