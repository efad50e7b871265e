"""The benchmark harness behind ``hetero bench``, ``hetero report`` and ``hetero tune``.

Every backend and PyTorch run the same cases on the same inputs; each result is checked
against a float64 reference before it is timed; timing is interleaved (CUDA events with
the L2 flushed on a GPU); rows carry latency percentiles, TFLOP/s, GB/s, % of the
device's peak (measured on a CPU), the speed-up vs PyTorch and the error.

>>> from hetero import bench
>>> doc = bench.run(bench.plan("gemm", shapes="square", quick=True))
>>> print(bench.table(doc))

Modules: :mod:`~hetero.bench.suites` (cases), :mod:`~hetero.bench.machine` (host and
peaks), :mod:`~hetero.bench.timing`, :mod:`~hetero.bench.runner` (the sweep),
:mod:`~hetero.bench.output` (table, JSON, CSV), :mod:`~hetero.bench.plots`,
:mod:`~hetero.bench.report`, :mod:`~hetero.bench.tune`.
"""

from .output import load, table, write_csv, write_json
from .runner import plan, run
from .work import TORCH, BenchSpec, Work

__all__ = ["TORCH", "BenchSpec", "Work", "load", "plan", "run", "table", "write_csv",
           "write_json"]
