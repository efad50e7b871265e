"""What a benchmark ran on: the machine and software (so a result file describes itself)
and the device's peak compute and memory bandwidth (the denominators of "% of peak").

A benchmarked backend that declares its device's peaks (``Backend.peaks``) is believed
first: the vendor knows its device. Otherwise, on a GPU the peaks come from the
datasheet table in :mod:`hetero.devices`; on the CPU they are measured, never looked up, with the best instructions the CPU has (whatever
kernel set hetero runs): the fp32 peak by the native ``cpu`` backend's FMA loop on the
benchmark's threads (best of 3); the bf16 peak by the fastest of that loop, its bf16
pair-dot loop (``vdpbf16ps``, where the CPU has AVX512_BF16) and an AMX tile loop
(``tdpbf16ps``, where it has AMX-BF16: PyTorch's oneDNN GEMMs run there); fp16 the fp32 peak (no CPU here multiplies fp16 faster). The bandwidth is the
fastest of a STREAM-style triad ``a = b + s·c`` (12 bytes per element: two reads and one
write) and a read-only dot product ``b·c`` (8 bytes per element) over float32 arrays of
128 MiB (twice the last-level cache where that is larger), best of 10 each, and hetero's
own GEMV streaming one such array as a weight. Memory-bound
kernels such as decode GEMVs only read, and reading alone runs faster than the triad's
mix, so the triad alone would put them above 100% of the roofline; PyTorch's reductions
read more slowly than hetero's GEMV does.
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

from .. import devices, fingerprint, tuned


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
    """This CPU's fp32 and bf16 peaks and memory bandwidth on ``threads`` threads,
    measured. fp8 products run on the bf16 instructions (every fp8 value is exact in
    bf16), so the fp8 dtypes get the bf16 peak; int8 (vpdpbusd) has no measured peak."""
    try:
        from .. import _C
        active = _C.set_cpu_isa("auto")  # the CPU's best instructions, whatever runs
        try:
            gflops = max(_C.fma_peak_gflops(threads) for _ in range(3))
            bf16 = max(_C.bf16_dot_peak_gflops(threads) for _ in range(3))
            amx = max(_C.amx_bf16_peak_gflops(threads) for _ in range(3))
        finally:
            _C.set_cpu_isa(active)
        how = (f"measured on {threads} threads (hetero._C {_C.cpu_isas().split(',')[-1]}): "
               f"fp32 FMA loop" + (", bf16 dot loop (vdpbf16ps)" if bf16 else "")
               + (", AMX tile loop (tdpbf16ps)" if amx else ""))
        bf16 = max(bf16, amx)
    except (ImportError, AttributeError):  # native backend not built
        gflops, bf16, how = None, 0.0, "FMA peak unknown (hetero._C not built)"
    bandwidth, which = measure_bandwidth(threads)
    tflops = None if gflops is None else gflops / 1e3
    per_dtype = {"float32": tflops, "bfloat16": max(tflops, bf16 / 1e3) if tflops else None,
                 "float16": tflops}
    per_dtype.update(dict.fromkeys(("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz",
                                    "float8_e5m2fnuz"), per_dtype["bfloat16"]))
    return Peaks(per_dtype, bandwidth / 1e12,
                 f"{how}; bandwidth: {which} over {probe_bytes() >> 20} MiB arrays (the "
                 "fastest of a triad, a read-only dot and hetero's own GEMV)")


def measure_bandwidth(threads: int) -> tuple[float, str]:
    """This machine's read bandwidth in bytes/s on ``threads`` threads, and which pass
    reached it: the fastest of a triad, a read-only dot and hetero's GEMV, best of 10,
    over arrays of :func:`probe_bytes` each."""
    probe = BandwidthProbe(threads)
    return max((probe.once() for _ in range(10)), key=lambda reading: reading[0])


class BandwidthProbe:
    """The read passes of :func:`measure_bandwidth` (triad, read-only dot, hetero's
    GEMV over arrays of :func:`probe_bytes`, each far larger than the last-level cache),
    kept allocated so a benchmark can run them between the calls it times.

    The bandwidth of a shared machine drifts within seconds (a 2-core VM here read 31
    and 60 GB/s minutes apart), so a memory-bound kernel is best compared with the
    bandwidth measured in the same round: put :meth:`once` in the interleaved calls;
    :attr:`readings` keeps every reading in order."""

    def __init__(self, threads: int):
        n = probe_bytes() // 4
        b, c, a = torch.rand(n), torch.rand(n), torch.empty(n)
        self.threads = threads
        self.passes = {"triad": (lambda: torch.add(b, c, alpha=1.5, out=a), 12 * n),
                       "read-only dot": (lambda: torch.dot(b, c), 8 * n)}
        gemv = _native_gemv(b, threads)
        if gemv is not None:
            self.passes["hetero's GEMV"] = (gemv, 4 * n)
        self.readings: list[float] = []

    def once(self) -> tuple[float, str]:
        """Each pass once: the best bytes/s and the pass that reached it (recorded)."""
        bandwidth, which = 0.0, ""
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            for name, (run, nbytes) in self.passes.items():
                start = time.perf_counter()
                run()
                seconds = time.perf_counter() - start
                if nbytes / seconds > bandwidth:
                    bandwidth, which = nbytes / seconds, name
        finally:
            torch.set_num_threads(previous)
        self.readings.append(bandwidth)
        return bandwidth, which


def _native_gemv(weights: torch.Tensor, threads: int):
    """``x @ w.t()`` for one row ``x`` against ``weights`` seen as a ``(K, 8192)``
    matrix, on the native cpu kernels (streaming reads faster than PyTorch's reductions
    do): a read-only bandwidth probe, or ``None`` without hetero._C."""
    try:
        from .. import _C
        from ..backends.views import view
    except ImportError:
        return None
    w = weights.view(-1, 8192)  # (N, 8192) row-major: x @ w.t() reads each row once
    x, out = torch.ones(1, 8192), torch.empty(1, w.shape[0])
    return lambda: _C.gemm(view(x), view(w.t()), view(out), None, 1.0, 1.0, threads)


def probe_bytes() -> int:
    """Bytes of each bandwidth-probe array: 128 MiB, or twice the last-level cache where
    that is larger (300 MiB L3s exist), in whole 32 KiB rows for the GEMV."""
    wanted = max(128 << 20, 2 * last_level_cache_bytes())
    return -(-wanted // (32 << 10)) * (32 << 10)


def last_level_cache_bytes() -> int:
    """Size of the CPU's largest cache (``/sys``), or 32 MiB where that is unknown."""
    largest = 0
    for level in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (level / "size").read_text().strip()
        except OSError:
            continue
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
        size = int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)
        largest = max(largest, size)
    return largest or 32 << 20


def table_peaks(name: str) -> Peaks:
    """A GPU's datasheet peaks (:mod:`hetero.devices`), or unknowns if it is not listed."""
    spec = devices.lookup(name)
    if spec is None:
        return Peaks({}, None, f"{name!r} is not in hetero.devices.SPECS: % of peak unknown")
    return Peaks({"bfloat16": spec.tflops_16bit, "float16": spec.tflops_16bit,
                  "float32": spec.tflops_fp32}, spec.tbytes_per_s,
                 f"datasheet ({spec.name}); see hetero/devices.py for sources")


def declared_peaks(device: torch.device, backends) -> Peaks | None:
    """The peaks the first of ``backends`` (names) that declares them gives for
    ``device``, or ``None``."""
    from .. import registry

    for name in backends:
        entry = registry.get(name)
        if entry is None or entry.backend is None or entry.load_error:
            continue
        declared = getattr(entry.backend, "peaks", lambda device: None)(device)
        if declared is not None:
            return Peaks(dict(declared.tflops), declared.tbytes_per_s,
                         f"declared by backend {name!r}" +
                         (f" ({declared.source})" if declared.source else ""))
    return None


def peaks(device: torch.device, threads: int, backends=()) -> Peaks:
    """The peaks "% of peak" is measured against: declared by one of ``backends``, else
    measured (CPU) or from the datasheet table."""
    declared = declared_peaks(device, backends)
    if declared is not None:
        return declared
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


def _cpu_kernel_set() -> str | None:
    try:
        from .. import _C
        return _C.cpu_isa()
    except ImportError:
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
        "cpu_flags": fingerprint.cpu_flags(),
        "cpu_kernel_set": _cpu_kernel_set(),
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
