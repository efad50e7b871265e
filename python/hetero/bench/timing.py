"""Timing several implementations of one case, interleaved so drift hits all alike.

Every callable has already run once (the correctness check, which also warms caches,
thread pools and autotuners). Then rounds: each round calls every implementation once,
starting from a different one each round. The number of rounds follows a time budget,
between ``min_rounds`` and ``max_rounds``.

- CPU: ``time.perf_counter`` around each call.
- GPU: CUDA events around each call, with the L2 cache flushed (a 256 MiB buffer
  zeroed) before it, so no call reads inputs the previous one left in cache; a few
  extra warm-up calls first. Events are read after the last round, in one sync.

Statistics: median and the 20th/80th percentiles of the samples.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch


@dataclass(frozen=True)
class Samples:
    seconds: tuple[float, ...]

    @property
    def median(self) -> float:
        return float(np.median(self.seconds))

    @property
    def p20(self) -> float:
        return float(np.percentile(self.seconds, 20))

    @property
    def p80(self) -> float:
        return float(np.percentile(self.seconds, 80))


def interleaved(fns: Sequence[Callable[[], object]], device: torch.device, *,
                budget_s: float, min_rounds: int = 3, max_rounds: int = 50) -> list[Samples]:
    """Samples for each of ``fns`` (already warmed up once), rounds interleaved."""
    if device.type == "cuda":
        return _gpu(fns, device, budget_s, min_rounds, max_rounds)
    return _cpu(fns, budget_s, min_rounds, max_rounds)


def _rounds(first_round_s: float, budget_s: float, min_rounds: int, max_rounds: int) -> int:
    return max(min_rounds, min(max_rounds, int(budget_s / max(first_round_s, 1e-9))))


def _cpu(fns, budget_s, min_rounds, max_rounds) -> list[Samples]:
    times: list[list[float]] = [[] for _ in fns]

    def one_round(start: int) -> None:
        for i in range(len(fns)):
            j = (start + i) % len(fns)
            t0 = time.perf_counter()
            fns[j]()
            times[j].append(time.perf_counter() - t0)

    one_round(0)  # its samples count: the check already warmed everything up
    rounds = _rounds(sum(t[0] for t in times), budget_s, min_rounds, max_rounds)
    for r in range(1, rounds):
        one_round(r)
    return [Samples(tuple(t)) for t in times]


_flush_buffer: dict[torch.device, torch.Tensor] = {}


def _gpu(fns, device, budget_s, min_rounds, max_rounds) -> list[Samples]:
    flush = _flush_buffer.setdefault(
        device, torch.empty(256 << 20, dtype=torch.int8, device=device))
    for fn in fns:  # a few more warm-up calls: clocks up, lazy initialisation done
        for _ in range(3):
            fn()
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for fn in fns:
        fn()
    torch.cuda.synchronize(device)
    rounds = _rounds(time.perf_counter() - start, budget_s, min_rounds, max_rounds)
    events = [[] for _ in fns]
    for r in range(rounds):
        for i in range(len(fns)):
            j = (r + i) % len(fns)
            flush.zero_()
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            fns[j]()
            end.record()
            events[j].append((begin, end))
    torch.cuda.synchronize(device)
    return [Samples(tuple(b.elapsed_time(e) * 1e-3 for b, e in pairs)) for pairs in events]
