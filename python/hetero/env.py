"""The ``HETERO_*`` environment variables: one table, read in one place.

Variables are read when hetero is imported and again on :func:`hetero.reload`;
:func:`settings` is what every module reads. Unknown
or misspelled ``HETERO_*`` names and malformed values are reported with a
:class:`~hetero.errors.HeteroConfigWarning`, never silently ignored.
"""

from __future__ import annotations

import difflib
import os
import warnings
from dataclasses import dataclass
from typing import Mapping

from .errors import HeteroConfigWarning

FALLBACK_POLICIES = ("warn", "error", "silent")

#: name -> (meaning, example). docs/usage.md's table follows it (tests/unit/test_env.py checks).
VARIABLES: dict[str, tuple[str, str]] = {
    "HETERO_BACKENDS": (
        "Backend priority list used when neither `backend=` nor `hetero.use()` is "
        "given. Exclusive unless it contains `*`, which stands for the device's "
        "default order (reference last).",
        "HETERO_BACKENDS=cpu,*",
    ),
    "HETERO_FALLBACK": (
        "What happens when the first candidate cannot serve a call and a later one "
        "does: `warn` (default, once per reason), `error` or `silent`.",
        "HETERO_FALLBACK=error",
    ),
    "HETERO_NUM_THREADS": (
        "Threads for the native `cpu` backend's kernels. Default: "
        "`torch.get_num_threads()` at each call.",
        "HETERO_NUM_THREADS=4",
    ),
    "HETERO_CPU_ISA": (
        "Kernel set of the native `cpu` backend: `amx`, `avx512`, `avx2` or `portable`, to run a "
        "lower set than the CPU's best (so every set stays tested). Default: the best "
        "this CPU runs (`hetero info` names it).",
        "HETERO_CPU_ISA=avx2",
    ),
    "HETERO_TUNED": (
        "Tuned dispatch table (self-calibration and `hetero tune` write it): a path, or "
        "`off` (no table: no calibration either). Default: this machine's, "
        "`~/.cache/hetero/tuned-<fingerprint>.json` (under `$XDG_CACHE_HOME` if set).",
        "HETERO_TUNED=off",
    ),
    "HETERO_CALIBRATE": (
        "`off` stops self-calibration: the first call of a shape bucket no longer times "
        "the kernels that can serve it; dispatch still uses the table's measurements. "
        "Default `on`.",
        "HETERO_CALIBRATE=off",
    ),
    "HETERO_STRICT": (
        "`1` is shorthand for `HETERO_FALLBACK=error` (used by the conformance suite).",
        "HETERO_STRICT=1",
    ),
}


@dataclass(frozen=True)
class Settings:
    """The parsed environment."""

    backends: tuple[str, ...] | None = None
    fallback: str = "warn"
    num_threads: int | None = None
    cpu_isa: str | None = None  # None: the best the CPU runs
    tuned: str | None = None  # a path, "off", or None for the default location
    calibrate: bool = True


def _warn(message: str) -> None:
    warnings.warn(message, HeteroConfigWarning, stacklevel=3)


def parse_backend_list(text: str) -> tuple[str, ...]:
    """``"triton, cuda,*"`` -> ``("triton", "cuda", "*")``; empty items dropped."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def read(environ: Mapping[str, str] | None = None) -> Settings:
    """Parse the ``HETERO_*`` variables of ``environ`` (default ``os.environ``)."""
    environ = os.environ if environ is None else environ
    for name in sorted(n for n in environ if n.startswith("HETERO_")):
        if name not in VARIABLES:
            close = difflib.get_close_matches(name, VARIABLES, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            _warn(f"unknown environment variable {name} is ignored{hint} "
                  f"(known: {', '.join(VARIABLES)})")

    backends = None
    if environ.get("HETERO_BACKENDS", "").strip():
        backends = parse_backend_list(environ["HETERO_BACKENDS"])

    fallback = environ.get("HETERO_FALLBACK", "warn").strip().lower() or "warn"
    if fallback not in FALLBACK_POLICIES:
        _warn(f"HETERO_FALLBACK={environ['HETERO_FALLBACK']!r} is not one of "
              f"{FALLBACK_POLICIES}; using 'warn'")
        fallback = "warn"

    strict = environ.get("HETERO_STRICT", "").strip().lower()
    if strict in ("1", "true", "yes", "on"):
        fallback = "error"
    elif strict not in ("", "0", "false", "no", "off"):
        _warn(f"HETERO_STRICT={environ['HETERO_STRICT']!r} is not 0 or 1; ignored")

    num_threads = None
    text = environ.get("HETERO_NUM_THREADS", "").strip()
    if text:
        try:
            num_threads = int(text)
        except ValueError:
            num_threads = 0
        if num_threads < 1:
            _warn(f"HETERO_NUM_THREADS={environ['HETERO_NUM_THREADS']!r} is not a positive "
                  f"integer; using torch.get_num_threads()")
            num_threads = None
    tuned = environ.get("HETERO_TUNED", "").strip() or None
    if tuned is not None and tuned.lower() in ("off", "0", "no", "false", "none"):
        tuned = "off"
    calibrate = environ.get("HETERO_CALIBRATE", "on").strip().lower() or "on"
    if calibrate not in ("on", "off", "1", "0", "true", "false", "yes", "no"):
        _warn(f"HETERO_CALIBRATE={environ['HETERO_CALIBRATE']!r} is not on or off; "
              f"using on")
    cpu_isa = environ.get("HETERO_CPU_ISA", "").strip().lower() or None
    return Settings(backends=backends, fallback=fallback, num_threads=num_threads,
                    cpu_isa=cpu_isa, tuned=tuned,
                    calibrate=calibrate not in ("off", "0", "false", "no"))


_current: Settings | None = None


def settings() -> Settings:
    """The settings in force: the environment as read at import or the last
    :func:`reload`."""
    global _current
    if _current is None:
        _current = read()
    return _current


def reload() -> Settings:
    """Read the environment again (:func:`hetero.reload` calls this); returns the new
    settings."""
    global _current
    _current = read()
    return _current
