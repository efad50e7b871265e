"""Tuned dispatch: the fastest *correct* kernel per device, op, dtype and shape bucket.

``hetero tune`` measures every backend (:mod:`hetero.bench`) and writes a :class:`Table`;
dispatch consults it when the caller asked for no backend (``backend=``,
``hetero.use`` and ``HETERO_BACKENDS`` come first) and picks the table's kernel over the
default order's first, provided that kernel can serve the call. ``hetero.explain()``
says when the table decided, and which file it came from.

Which table: ``HETERO_TUNED=PATH`` (``off`` disables tuning), else
``$XDG_CACHE_HOME/hetero/tuned.json`` (``~/.cache/hetero/tuned.json``) when it exists;
:func:`hetero.set_tuned_table` sets one from Python.

Buckets: every size an op buckets by (``OpSpec.bucket_dims``: ``(M, N, K)`` for gemm,
``(Sq, Sk)`` for attention) rounded up to a power of two; head dims, dtype and features
are already part of dispatch's traits. A call whose bucket was never measured follows
the default order.

File format (JSON)::

    {"format": "hetero-tuned/1", "created": "...", "entries": [
        {"device": "AMD EPYC", "op": "gemm", "dtype": "float32", "bucket": [16, 4096, 4096],
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

from .ops import registry as op_registry

FORMAT = "hetero-tuned/1"


def pow2_ceil(n: int) -> int:
    """The smallest power of two ``>= n`` (0 for 0)."""
    return 0 if n <= 0 else 1 << (n - 1).bit_length()


def bucket(*sizes: int) -> tuple[int, ...]:
    """A call's shape bucket: each size rounded up to a power of two."""
    return tuple(pow2_ceil(n) for n in sizes)


def bucket_label(op: str, sizes) -> str:
    """``gemm (16, 4096, 4096)`` -> ``"M≤16 N≤4096 K≤4096"``."""
    spec = op_registry.get(op)
    names = spec.bucket_dims if spec is not None else [f"dim{i}" for i in range(len(sizes))]
    return " ".join(f"{d}≤{v}" for d, v in zip(names, sizes))


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
        margin = (f", {self.runner_up_s / self.median_s:.2f}× faster than {self.runner_up}"
                  if self.runner_up and self.median_s > 0 else "")
        return (f"{self.kernel} fastest correct for {self.op} {self.dtype} "
                f"{bucket_label(self.op, self.bucket)} on {self.device}{margin}")


class Table:
    """A set of :class:`Entry`, at most one per (device, op, dtype, bucket)."""

    def __init__(self, entries=(), path: str | None = None, created: str | None = None):
        self.path, self.created = path, created
        self.entries: dict[tuple, Entry] = {}
        for e in entries:
            self.entries[(e.device, e.op, e.dtype, tuple(e.bucket))] = e

    def lookup(self, device: str, op: str, dtype: str, bucket) -> Entry | None:
        return self.entries.get((device, op, dtype, tuple(bucket)))

    @property
    def ops(self) -> set[str]:
        return {e.op for e in self.entries.values()}

    def as_dict(self) -> dict:
        return {"format": FORMAT, "created": self.created,
                "entries": [dict(asdict(e), bucket=list(e.bucket))
                            for e in self.entries.values()]}

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=1) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: dict, path: str | None = None) -> "Table":
        where = path or "tuned table"
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{where}: expected format {FORMAT!r}, got {found!r}")
        entries = []
        for i, item in enumerate(data.get("entries", [])):
            try:
                spec = op_registry.get(item["op"])  # an op not registered here never matches
                if spec is not None and len(item["bucket"]) != len(spec.bucket_dims):
                    raise ValueError(f"op {item['op']!r} with bucket {item['bucket']!r}")
                entries.append(Entry(**dict(item, bucket=tuple(int(b) for b in item["bucket"]))))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{where}: entry {i} is malformed ({exc})") from None
        return cls(entries, path=path, created=data.get("created"))

    def __len__(self) -> int:
        return len(self.entries)


def default_path() -> Path:
    """``$XDG_CACHE_HOME/hetero/tuned.json`` (``~/.cache/hetero/tuned.json``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "hetero" / "tuned.json"


def load(path: str | os.PathLike) -> Table:
    """Read a table; ``ValueError`` (naming the file) if it is not one."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read a tuned table ({exc})") from None
    return Table.from_dict(data, str(path))
