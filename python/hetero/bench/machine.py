"""What a benchmark ran on: the machine and software (so a result file describes itself)
and the device's peak compute and memory bandwidth (the denominators of "% of peak").

On a GPU the peaks come from the datasheet table in :mod:`hetero.devices`. On the CPU
they are measured, never looked up: the FMA peak by the native ``cpu`` backend's FMA loop
on the benchmark's threads (best of 3), the bandwidth as the faster of a STREAM-style
triad ``a = b + s·c`` (12 bytes per element: two reads and one write) and a read-only dot
product ``b·c`` (8 bytes per element) over 128 MiB float32 arrays, best of 5 each. Memory-bound kernels
such as decode GEMVs only read, and reading alone runs faster than the triad's mix, so
the triad alone would put them above 100% of the roofline. Low-precision dtypes share the
fp32 FMA peak on a CPU: no hetero CPU kernel multiplies in bf16/fp16, they are widened to
fp32 first.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .. import devices, tuned


@dataclass(frozen=True)
class Peaks:
    """Peak dense throughput per dtype (TFLOP/s; ``None`` = unknown) and bandwidth."""

    tflops: dict[str, float | None]
    tbytes_per_s: float | None
    source: str

    def for_dtype(self, dtype: str) -> float | None:
        return self.tflops.get(dtype)

    def as_dict(self) -> dict:
        return asdict(self)


def measure_cpu_peaks(threads: int) -> Peaks:
    """This CPU's FMA peak and memory bandwidth on ``threads`` threads, measured."""
    try:
        from .. import _C
        gflops = max(_C.fma_peak_gflops(threads) for _ in range(3))
        how = f"measured: FMA loop on {threads} threads (hetero._C, {_C.cpu_isa()})"
    except (ImportError, AttributeError):  # native backend not built
        gflops, how = None, "FMA peak unknown (hetero._C not built)"
    n = 1 << 25  # 128 MiB per array: far beyond any last-level cache
    b, c, a = torch.rand(n), torch.rand(n), torch.empty(n)
    passes = {"triad": (lambda: torch.add(b, c, alpha=1.5, out=a), 12 * n),
              "read-only dot": (lambda: torch.dot(b, c), 8 * n)}
    bandwidth, which = 0.0, ""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for name, (run, nbytes) in passes.items():
            best = float("inf")
            for _ in range(5):
                start = time.perf_counter()
                run()
                best = min(best, time.perf_counter() - start)
            if nbytes / best > bandwidth:
                bandwidth, which = nbytes / best, name
    finally:
        torch.set_num_threads(previous)
    tflops = None if gflops is None else gflops / 1e3
    return Peaks({d: tflops for d in ("float32", "bfloat16", "float16")}, bandwidth / 1e12,
                 f"{how}; bandwidth: {which} over 128 MiB arrays (the faster of triad and "
                 "read-only dot)")


def table_peaks(name: str) -> Peaks:
    """A GPU's datasheet peaks (:mod:`hetero.devices`), or unknowns if it is not listed."""
    spec = devices.lookup(name)
    if spec is None:
        return Peaks({}, None, f"{name!r} is not in hetero.devices.SPECS: % of peak unknown")
    return Peaks({"bfloat16": spec.tflops_16bit, "float16": spec.tflops_16bit,
                  "float32": spec.tflops_fp32}, spec.tbytes_per_s,
                 f"datasheet ({spec.name}); see hetero/devices.py for sources")


def peaks(device: torch.device, threads: int) -> Peaks:
    if device.type == "cpu":
        return measure_cpu_peaks(threads)
    return table_peaks(tuned.device_name(device))


def _git_revision() -> str | None:
    """``git describe`` of the hetero checkout the package was built from, if any
    (the working directory or the package's own source tree)."""
    for where in (Path.cwd(), Path(__file__).resolve().parents[3]):
        try:
            out = subprocess.run(["git", "-C", str(where), "describe", "--always", "--dirty",
                                  "--abbrev=12"], capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if out.returncode == 0 and (where / "python" / "hetero").is_dir():
            return out.stdout.strip()
    return None


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except Exception:  # absent or broken: record that it was not there
        return None


def describe(device: torch.device, threads: int) -> dict:
    """Host, device, threads and library versions, for a result file's header."""
    from .. import __version__

    info = {
        "host": socket.gethostname(),
        "os": platform.platform(),
        "cpu": tuned.device_name(torch.device("cpu")),
        "cores": os.cpu_count(),
        "threads": threads,
        "device": str(device),
        "device_name": tuned.device_name(device),
        "versions": {"hetero": __version__, "torch": torch.__version__,
                     "python": platform.python_version(), "numpy": _version("numpy"),
                     "triton": _version("triton")},
        "git": _git_revision(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                       "capability": f"{props.major}.{props.minor}",
                       "cuda": torch.version.cuda, "hip": torch.version.hip}
    return info
