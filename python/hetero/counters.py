"""``hetero.stats()``: what the torch bridge served, per op and kernel, and what it left
to PyTorch, with the reason — counted in calls and in FLOPs.

Each op's torch operator counts its calls under the op's name (an op with a backward
kernel counts those under ``<op>_backward``), with the op's own FLOP count
(``OpSpec.flops``: multiply-adds count as two).

Counting happens when a call runs. Inside ``torch.compile``'d code the hetero ops still
count at run time, but calls the compiled code leaves to PyTorch are decided while
tracing and are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Count:
    calls: int = 0
    flops: float = 0.0


@dataclass
class Stats:
    """A snapshot: ``served[op][kernel]`` and ``fallbacks[op][reason]`` are
    :class:`Count`\\ s (``kernel`` is ``backend.kernel``; a fallback ran on PyTorch)."""

    served: dict[str, dict[str, Count]] = field(default_factory=dict)
    fallbacks: dict[str, dict[str, Count]] = field(default_factory=dict)

    def flops(self, op: str | None = None, *, served: bool = True) -> float:
        """FLOPs served by hetero kernels (or, ``served=False``, left to PyTorch), for
        one op or all of them."""
        table = self.served if served else self.fallbacks
        return sum(c.flops for name, per in table.items() if op in (None, name)
                   for c in per.values())

    def served_fraction(self, op: str | None = None) -> float:
        """Share of the FLOPs that hetero kernels served (1.0 when nothing ran)."""
        done, left = self.flops(op), self.flops(op, served=False)
        return done / (done + left) if done + left else 1.0

    def __str__(self) -> str:
        lines = [f"{'op':<19} {'served by / fallback reason':<58} {'calls':>7} {'GFLOP':>9}"]
        for op in dict.fromkeys([*self.served, *self.fallbacks]):
            for label, table in (("", self.served), ("PyTorch: ", self.fallbacks)):
                for name, c in sorted(table.get(op, {}).items()):
                    text = label + name
                    text = text if len(text) <= 58 else text[:55] + "..."
                    lines.append(f"{op:<19} {text:<58} {c.calls:>7} {c.flops / 1e9:>9.3f}")
        lines.append(f"hetero served {100 * self.served_fraction():.1f}% of the FLOPs")
        return "\n".join(lines)


_current = Stats()

#: Callables ``observer(op, served_by, args, reason)``, told of every counted call while
#: they are here (:func:`hetero.audit` checks calls this way): ``served_by`` is the
#: kernel's qualname, or ``None`` when PyTorch computed the call; ``reason`` why the
#: call did not run on the first choice (``None`` when it did); ``args`` the op's record
#: when the caller has one (then the kernel has written ``args.out``, and the observer
#: may overwrite it).
observers: list = []


def _count(table: dict, op: str, name: str, flops: float) -> None:
    count = table.setdefault(op, {}).get(name)
    if count is None:
        count = table[op][name] = Count()
    count.calls += 1
    count.flops += flops


def record(op: str, kernel: str, flops: float, args=None, skipped: str | None = None) -> None:
    """Count one call of ``op`` that ``kernel`` served (on the record ``args``; the
    backends ahead of it skipped for the reason ``skipped``)."""
    _count(_current.served, op, kernel, flops)
    for observer in observers:
        observer(op, kernel, args, skipped)


def record_fallback(op: str, reason: str, flops: float) -> None:
    """Count one call of ``op`` that PyTorch computed, and why."""
    _count(_current.fallbacks, op, reason, flops)
    for observer in observers:
        observer(op, None, None, reason)


#: Callables giving counts kept elsewhere (the native route): ``[(served?, op, kernel or
#: reason, calls, flops), ...]``, added by :func:`stats`; ``resetters`` zero them.
sources: list = []
resetters: list = []


def stats() -> Stats:
    """A copy of the counters since the start (or the last :func:`reset_stats`).

    >>> with hetero.enabled():
    ...     model(x)
    >>> print(hetero.stats())            # a table per op, kernel and fallback reason
    >>> hetero.stats().served_fraction() # share of FLOPs on hetero kernels
    """
    snapshot = Stats({op: {k: Count(c.calls, c.flops) for k, c in per.items()}
                      for op, per in _current.served.items()},
                     {op: {k: Count(c.calls, c.flops) for k, c in per.items()}
                      for op, per in _current.fallbacks.items()})
    for source in sources:
        for served, op, name, calls, flops in source():
            table = snapshot.served if served else snapshot.fallbacks
            count = table.setdefault(op, {}).setdefault(name, Count())
            count.calls += calls
            count.flops += flops
    return snapshot


def reset_stats() -> None:
    """Zero every counter."""
    _current.served.clear()
    _current.fallbacks.clear()
    for reset in resetters:
        reset()
