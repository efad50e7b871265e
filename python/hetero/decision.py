"""What dispatch decided for one call signature, and why (:func:`hetero.explain`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import tuned
from .kernel import Kernel


@dataclass
class Candidate:
    """One backend (and kernel, when the backend got that far) that was considered."""

    backend: str
    kernel: Kernel | None
    reasons: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.kernel.qualname if self.kernel else self.backend


@dataclass
class Decision:
    """The outcome of dispatch for one call signature, as returned by :func:`explain`.

    ``chosen`` is ``None`` when no candidate can serve the call. ``candidates`` lists
    everything considered, in order, each with the reasons it was rejected (empty for
    a kernel that could serve it).
    """

    traits: tuple  # the op's traits
    source: str
    exclusive: bool
    policy: str
    candidates: list[Candidate]
    chosen: Kernel | None
    tuned: tuned.Entry | None = None  # the tuned table's entry for this call, if any
    tuned_from: str | None = None  # the file it came from
    tuned_note: str | None = None  # why the table did not decide, when it could have
    #: Opt-in backends (``default = False``) that could also serve the call, had it asked
    #: for them by name (filled by :func:`hetero.explain` when no backend was named).
    opt_in: list[str] = field(default_factory=list)

    @property
    def tuned_choice(self) -> bool:
        """True when the tuned table picked the chosen kernel."""
        return self.chosen is not None and self.tuned is not None \
            and self.chosen.qualname == self.tuned.kernel

    @property
    def fallback(self) -> bool:
        """True when a backend ahead of the chosen one was rejected (the tuned table
        preferring a later one is not a fallback)."""
        return self.chosen is not None and not self.tuned_choice \
            and self.candidates[0].backend != self.chosen.backend

    def rejected(self) -> list[Candidate]:
        return [c for c in self.candidates if c.reasons]

    def summary(self) -> str:
        t = self.traits
        fields = ", ".join(f"{k}={str(v).removeprefix('torch.')}"
                           for k, v in t._asdict().items() if k != "op" and v is not None)
        return f"{t.op}({fields})"

    def __str__(self) -> str:
        head = (f"{self.summary()}: " +
                (f"runs {self.chosen.qualname}" if self.chosen else "no kernel can run it"))
        lines = [head]
        if self.tuned is not None:
            verdict = "used" if self.tuned_choice else "not used: that kernel cannot serve this call"
            lines.append(f"  tuned table {self.tuned_from}: {self.tuned.describe()} ({verdict})")
        elif self.tuned_note is not None:
            lines.append(f"  tuned table: {self.tuned_note}")
        lines.append(f"  order from {self.source}{' (exclusive)' if self.exclusive else ''}"
                     f", fallback policy {self.policy!r}:")
        for c in self.candidates:
            if not c.reasons:
                mark = "could also run"
                if c.kernel is self.chosen:
                    mark = "chosen by the tuned table" if self.tuned_choice else "chosen"
                lines.append(f"    + {c.label}: {mark}")
            else:
                lines.append(f"    - {c.label}: " + "; ".join(c.reasons))
        if self.opt_in:
            lines.append("  opt-in backends that could also run it, when asked for by name: " +
                         ", ".join(f"{name} (backend={name!r})" for name in self.opt_in))
        return "\n".join(lines)
