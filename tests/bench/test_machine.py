"""The machine description's measured CPU peaks (the denominators of % of peak)."""

from __future__ import annotations

import re
import time

import torch

from hetero import fingerprint
from hetero.bench import machine


def test_cpu_peaks_are_measured_and_say_how():
    peaks = machine.measure_cpu_peaks(1)
    assert all(peaks.for_dtype(d) > 0 for d in ("float32", "bfloat16", "float16"))
    assert 1e-4 < peaks.tbytes_per_s < 10  # between 0.1 GB/s and 10 TB/s
    assert re.search(r"measured on 1 threads .*: fp32 FMA loop.*; bandwidth: (triad|read-only "
                     r"dot|hetero's GEMV) over \d+ MiB", peaks.source)
    flags = fingerprint.cpu_flags()
    if "amx_bf16" in flags:  # tile products: many times the fp32 rate
        assert "AMX tile loop" in peaks.source
        assert peaks.for_dtype("bfloat16") > 4 * peaks.for_dtype("float32")
    elif "avx512_bf16" in flags:  # bf16 multiplies at twice the fp32 rate
        assert "bf16 dot loop" in peaks.source
        assert peaks.for_dtype("bfloat16") > 1.5 * peaks.for_dtype("float32")
    else:
        assert peaks.for_dtype("bfloat16") == peaks.for_dtype("float32")


def _best_gflops(dtype: torch.dtype) -> float:
    a, b = torch.randn(256, 256).to(dtype), torch.randn(256, 256).to(dtype)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * 256**3 / best / 1e9


def test_no_real_gemm_beats_the_measured_peak():
    # The instrument's sanity, not a performance claim: a peak loop the compiler
    # optimised away would read far below what PyTorch's own GEMM reaches.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        peaks = machine.measure_cpu_peaks(1)
        for dtype, name in ((torch.float32, "float32"), (torch.bfloat16, "bfloat16")):
            assert _best_gflops(dtype) < 1.5 * peaks.for_dtype(name) * 1e3, name
    finally:
        torch.set_num_threads(threads)


def test_the_bandwidth_probe_reads_again_and_keeps_its_readings():
    """Benchmarks run the probe between their timed calls: every pass once per reading,
    each reading kept in order, and the caller's thread count left as it was."""
    threads = torch.get_num_threads()
    probe = machine.BandwidthProbe(1)
    assert {"triad", "read-only dot"} <= set(probe.passes)
    first, which = probe.once()
    second, _ = probe.once()
    assert which in probe.passes
    assert probe.readings == [first, second]
    assert all(1e8 < r < 1e13 for r in probe.readings)  # 0.1 GB/s to 10 TB/s
    assert torch.get_num_threads() == threads
