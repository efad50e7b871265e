"""What the benchmark needs from an op (``OpSpec.bench``): its cases per suite, a case
from a shape file's entry, and the :class:`Work` of one case in one dtype.

A bench case is a frozen dataclass with ``op`` (a class attribute), ``name`` and the
op's sizes as fields, and ``shape`` and ``label`` (text), ``flops``, ``min_bytes(element
size)``, ``bucket`` (the tuned table's) and ``key()`` (what makes two cases the same).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch

TORCH = "torch"  # the baseline participant: PyTorch's own call (the torch backend's kernel)


@dataclass(frozen=True)
class BenchSpec:
    """suites: ``{suite name: cases(sizes)}`` (:class:`~hetero.bench.suites.Sizes`);
    an op takes part in the suites it names. case_from: ``case_from(entry) -> case`` for
    one entry of a JSON/YAML shape file (``ValueError``/``KeyError`` for a bad one).
    work: ``work(case, dtype, device, inputs) -> Work``. flops_formula: how a case's
    FLOPs are counted, in words (for result files). case_of: ``case_of(record) -> case``
    or ``None``: the case that measures a call like this one (for self-calibration).
    training_step: for an op whose kernels bring their own backward,
    ``training_step(case, dtype, device, inputs, kernel) -> step``: ``step()`` runs the
    case's forward and backward on ``kernel`` (the ``torch`` backend's kernel: PyTorch's
    call under autograd), for calibrating training calls."""

    suites: Mapping[str, Callable]
    case_from: Callable[[dict], object]
    work: Callable
    flops_formula: str = ""
    case_of: Callable | None = None
    training_step: Callable | None = None


@dataclass
class Work:
    """One (case, dtype): the op's arguments, PyTorch's way of computing the same thing,
    and what to judge a result by.

    ``args``/``kwargs``: the op's arguments (``hetero.<op>(*args, **kwargs)``).
    ``torch_call(out)``: PyTorch computing the call into ``out`` (a poisoned tensor) where
    it can, else returning a new result; ``torch_call(None)`` is the call as a user makes
    it. ``pick(result)``: the checked sample of a result, to compare with ``reference``
    (float64) within ``bound``."""

    args: tuple
    kwargs: dict
    torch_call: Callable[[torch.Tensor | None], torch.Tensor]
    pick: Callable[[torch.Tensor], torch.Tensor]
    reference: torch.Tensor
    bound: object


class Inputs:
    """float32 operands per (shape, seed), made once per run and cast per dtype.
    ``copy``: another set of operands of the same shapes (for timing on copies that do
    not fit in the cache together)."""

    def __init__(self, copy: int = 0):
        self._made: dict[tuple, torch.Tensor] = {}
        self._copy = copy

    def get(self, shape: tuple[int, ...], seed: int) -> torch.Tensor:
        key = (shape, seed)
        if key not in self._made:
            gen = torch.Generator().manual_seed(seed + 7919 * self._copy)
            self._made[key] = torch.randn(shape, generator=gen)
        return self._made[key]


def sample(n: int, generator: torch.Generator, edge: int = 8, middle: int = 8) -> list[int]:
    """Indices to check: both edges (where edge tiles go wrong) and a few random ones in
    between."""
    if n <= 2 * edge + middle:
        return list(range(n))
    inner = torch.randperm(n - 2 * edge, generator=generator)[:middle] + edge
    return sorted({*range(edge), *range(n - edge, n), *inner.tolist()})


def positive(item: dict, name: str, default=None, minimum: int = 1) -> int:
    """``item[name]`` (or ``default``) checked to be an integer >= ``minimum``: for
    ``case_from``."""
    value = item.get(name, default)
    if value is None:
        raise ValueError(f"{name!r} is required")
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value
