"""Progress of long runs (benchmark sweeps, conformance suites) on stderr."""

from __future__ import annotations

import sys
import time


class Progress:
    """``[=====     ] 12/40 0:35 label`` on a terminal (one line, redrawn); otherwise
    (a CI log) a line at most every 5% of the steps and at the last one. On stderr, so
    what a command prints on stdout stays clean."""

    def __init__(self, total: int, enabled: bool = True, stream=None):
        self.total, self.enabled, self.count = total, enabled, 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = time.perf_counter()

    def note(self, message: str) -> None:
        if self.enabled:
            print(message, file=self.stream, flush=True)

    def step(self, label: str) -> None:
        self.count += 1
        if not self.enabled:
            return
        elapsed = int(time.perf_counter() - self.start)
        clock = f"{elapsed // 60}:{elapsed % 60:02d}"
        if self.tty:
            filled = int(20 * (self.count - 1) / max(self.total, 1))
            bar = "=" * filled + " " * (20 - filled)
            print(f"\r[{bar}] {self.count}/{self.total} {clock} {label[:60]:<60}",
                  end="", file=self.stream, flush=True)
        elif self.count in (1, self.total) or self.count % max(1, self.total // 20) == 0:
            print(f"[{self.count}/{self.total} {clock}] {label}", file=self.stream, flush=True)

    def done(self) -> None:
        if self.enabled and self.tty:
            print(file=self.stream, flush=True)
