"""The machine description's measured CPU peaks (the denominators of % of peak)."""

from __future__ import annotations

import re

from hetero.bench import machine


def test_cpu_peaks_are_measured_and_say_how():
    peaks = machine.measure_cpu_peaks(1)
    assert all(peaks.for_dtype(d) > 0 for d in ("float32", "bfloat16", "float16"))
    assert 1e-4 < peaks.tbytes_per_s < 10  # between 0.1 GB/s and 10 TB/s
    assert re.search(r"FMA loop on 1 threads .*; bandwidth: (triad|read-only dot) over 128 MiB",
                     peaks.source)
