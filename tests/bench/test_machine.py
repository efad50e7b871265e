"""The machine description's measured CPU peaks (the denominators of % of peak)."""

from __future__ import annotations

import re

from hetero import fingerprint
from hetero.bench import machine


def test_cpu_peaks_are_measured_and_say_how():
    peaks = machine.measure_cpu_peaks(1)
    assert all(peaks.for_dtype(d) > 0 for d in ("float32", "bfloat16", "float16"))
    assert 1e-4 < peaks.tbytes_per_s < 10  # between 0.1 GB/s and 10 TB/s
    assert re.search(r"measured on 1 threads .*: fp32 FMA loop.*; bandwidth: (triad|read-only "
                     r"dot|hetero's GEMV) over 128 MiB", peaks.source)
    if "avx512_bf16" in fingerprint.cpu_flags():  # bf16 multiplies at twice the fp32 rate
        assert "bf16 dot loop" in peaks.source
        assert peaks.for_dtype("bfloat16") > 1.5 * peaks.for_dtype("float32")
    else:
        assert peaks.for_dtype("bfloat16") == peaks.for_dtype("float32")
