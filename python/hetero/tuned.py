"""Tuned dispatch: the fastest *correct* kernel per device, op, dtype and shape bucket,
measured on this machine.

Entries come from self-calibration (:mod:`hetero.calibration`: the first call of a
bucket times the kernels that can serve it, PyTorch's own among them) and from
``hetero tune`` (the benchmark, :mod:`hetero.bench`). Dispatch consults the table when
the caller asked for no backend (``backend=``, ``hetero.use`` and ``HETERO_BACKENDS``
come first) and picks the table's kernel over the default order's first, provided that
kernel can serve the call. ``hetero.explain()`` says when the table decided, with the
measurement and the file it came from.

A table records the :mod:`~hetero.fingerprint` of the machine it was measured on; one
from another fingerprint is ignored, with the reason.

Which table: ``HETERO_TUNED=PATH`` (``off`` disables tuning and calibration), else this
machine's, ``$XDG_CACHE_HOME/hetero/tuned-<fingerprint>.json``
(``~/.cache/hetero/...``); :func:`hetero.set_tuned_table` sets one from Python.

Buckets: every size an op buckets by (``OpSpec.bucket_dims``: ``(M, N, K)`` for gemm;
``(B·Hq, Sq, Sk, D)`` for attention) rounded up to a power of two, and the categories it
buckets by as they are (lowercase names: gemm's operand ``layout``, which changes how
fast a kernel reads them). An entry is per device, op, dtype and bucket. A call whose
bucket was never measured follows the default order.

File format (JSON; files of the earlier formats, ``hetero-tuned/1`` without a
fingerprint and ``hetero-tuned/2``, are read too, less their entries of a bucket layout
an op has since changed: attention bucketed by ``(Sq, Sk)`` alone before ``/3``)::

    {"format": "hetero-tuned/3", "created": "...", "fingerprint": {...}, "entries": [
        {"device": "AMD EPYC", "op": "gemm", "dtype": "float32", "bucket": [16, 4096, 4096, 1],
         "kernel": "cpu.gemm", "median_s": 0.017, "runner_up": "reference.torch",
         "runner_up_s": 0.41, "cases": 2}]}
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import torch

from . import fingerprint as machine
from .ops import registry as op_registry

FORMAT = "hetero-tuned/3"
_READS = ("hetero-tuned/1", "hetero-tuned/2", FORMAT)


def pow2_ceil(n: int) -> int:
    """The smallest power of two ``>= n`` (0 for 0)."""
    return 0 if n <= 0 else 1 << (n - 1).bit_length()


def bucket(*sizes: int) -> tuple[int, ...]:
    """A call's shape bucket: each size rounded up to a power of two."""
    return tuple(pow2_ceil(n) for n in sizes)


#: Appended to an op's name for the entries that measure its forward and backward
#: together (training calls of an op whose kernels bring their own backward).
WITH_BACKWARD = "+backward"


def with_backward(op: str) -> str:
    """The table's op name for ``op``'s forward and backward measured together."""
    return op + WITH_BACKWARD


#: Appended to an op's name for the entries measured as the native route serves the op
#: (:mod:`hetero.native_route`: on the CPU, at its per-call cost), which decide the calls
#: it serves; the plain entries decide calls made through hetero's functions.
NATIVE = "@native"


def natively(op: str) -> str:
    """The table's op name for ``op`` measured as the native route serves it."""
    return op + NATIVE


def base_op(name: str) -> str:
    """The op of a table's op name (``gemm@native`` -> ``gemm``)."""
    return name.removesuffix(NATIVE).removesuffix(WITH_BACKWARD)


def bucket_label(op: str, bucket) -> str:
    """``gemm (16, 4096, 4096, 1)`` -> ``"M≤16 N≤4096 K≤4096 layout 1"``."""
    spec = op_registry.get(base_op(op))
    names = spec.bucket_dims if spec is not None else [f"dim{i}" for i in range(len(bucket))]
    return " ".join(f"{d} {v}" if d.islower() else f"{d}≤{v}" for d, v in zip(names, bucket))


@lru_cache(maxsize=None)
def device_name(device: torch.device) -> str:
    """The name a table keys a device by: the GPU's name, or the CPU's model name."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith(("model name", "Model", "Hardware")):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return platform.processor() or platform.machine()
    return device.type


@dataclass(frozen=True)
class Entry:
    """The winner of one (device, op, dtype, bucket): ``kernel`` is ``backend.kernel``;
    ``runner_up`` the second fastest correct kernel, if any."""

    device: str
    op: str
    dtype: str
    bucket: tuple[int, ...]
    kernel: str
    median_s: float
    runner_up: str | None = None
    runner_up_s: float | None = None
    cases: int = 1

    @property
    def backend(self) -> str:
        return self.kernel.split(".", 1)[0]

    def describe(self) -> str:
        margin = (f" ({_ms(self.median_s)} against {self.runner_up}'s {_ms(self.runner_up_s)}, "
                  f"{self.runner_up_s / self.median_s:.2f}×)"
                  if self.runner_up and self.median_s > 0 else f" ({_ms(self.median_s)})")
        kept = self.runner_up_s is not None and self.runner_up_s < self.median_s
        verdict = "kept: no kernel beat it by the margin" if kept else "fastest correct"
        return (f"{self.kernel} {verdict} for {self.op} {self.dtype} "
                f"{bucket_label(self.op, self.bucket)} on {self.device}{margin}")


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms"


class Table:
    """A set of :class:`Entry`, at most one per (device, op, dtype, bucket), measured on
    the machine ``fingerprint`` describes (``None``: unknown, e.g. a table made in
    code)."""

    def __init__(self, entries=(), path: str | None = None, created: str | None = None,
                 fingerprint: dict | None = None):
        self.path, self.created, self.fingerprint = path, created, fingerprint
        self.entries: dict[tuple, Entry] = {}
        for e in entries:
            self.add(e)

    def add(self, entry: Entry) -> None:
        """Add or replace the entry of ``entry``'s (device, op, dtype, bucket)."""
        self.entries[(entry.device, entry.op, entry.dtype, tuple(entry.bucket))] = entry

    def lookup(self, device: str, op: str, dtype: str, bucket) -> Entry | None:
        return self.entries.get((device, op, dtype, tuple(bucket)))

    @property
    def ops(self) -> set[str]:
        """The ops with entries (those measured with their backward, or as the native
        route serves them, under names of their own too)."""
        return {base_op(e.op) for e in self.entries.values()}

    def as_dict(self) -> dict:
        return {"format": FORMAT, "created": self.created, "fingerprint": self.fingerprint,
                "entries": [dict(asdict(e), bucket=list(e.bucket))
                            for e in self.entries.values()]}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the table to ``path`` (through a temporary file, so a reader never
        sees half of it)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(json.dumps(self.as_dict(), indent=1) + "\n")
        partial.replace(path)
        return path

    @classmethod
    def from_dict(cls, data: dict, path: str | None = None) -> "Table":
        where = path or "tuned table"
        if not isinstance(data, dict) or data.get("format") not in _READS:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{where}: expected format {FORMAT!r}, got {found!r}")
        entries = []
        for i, item in enumerate(data.get("entries", [])):
            try:
                spec = op_registry.get(base_op(item["op"]))  # one not registered never matches
                if spec is not None and len(item["bucket"]) != len(spec.bucket_dims):
                    if data["format"] != FORMAT:
                        continue  # measured in an earlier bucket layout: it misleads now
                    raise ValueError(f"op {item['op']!r} with bucket {item['bucket']!r}")
                entries.append(Entry(**dict(item, bucket=tuple(int(b) for b in item["bucket"]))))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{where}: entry {i} is malformed ({exc})") from None
        return cls(entries, path=path, created=data.get("created"),
                   fingerprint=data.get("fingerprint"))

    def foreign(self) -> str | None:
        """Why this table does not describe this machine (``None``: it does, or it does
        not say which machine it describes)."""
        if self.fingerprint is None:
            return None
        ours = machine.current()
        if self.fingerprint == ours:
            return None
        return ("measured on another machine or build: "
                + "; ".join(machine.differences(self.fingerprint, ours)))

    def __len__(self) -> int:
        return len(self.entries)


def default_path() -> Path:
    """This machine's table: ``$XDG_CACHE_HOME/hetero/tuned-<fingerprint digest>.json``
    (``~/.cache/hetero/...``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "hetero" / f"tuned-{machine.digest(machine.current())}.json"


def load(path: str | os.PathLike) -> Table:
    """Read a table; ``ValueError`` (naming the file) if it is not one."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read a tuned table ({exc})") from None
    return Table.from_dict(data, str(path))
