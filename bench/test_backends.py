"""Regression benchmarks (pytest-benchmark): every available backend and PyTorch on the
small CPU ``square`` cases of the harness, GEMM and attention, fp32 and bf16.

Each participant's result is first judged against the float64 reference exactly as
``hetero bench`` judges it (:func:`hetero.bench.runner.judge`); a wrong one fails
instead of being timed. ``extra_info`` carries FLOPs and GFLOP/s for comparing saved
runs (``--benchmark-autosave``, ``--benchmark-compare``).

    pytest bench/test_backends.py
"""

from __future__ import annotations

import pytest
import torch

from hetero.bench import TORCH, runner, suites

DEVICE = torch.device("cpu")
CASES = [c for c in suites.cases("all", "square", "cpu", quick=True)
         if c.op == "gemm" or not c.causal]
PARAMS = [(name, case, dtype) for case in CASES for dtype in ("float32", "bfloat16")
          for name in runner.default_backends(DEVICE) + [TORCH]]


@pytest.mark.parametrize("name, case, dtype", PARAMS,
                         ids=[f"{n}-{c.op}-{c.shape}-{d}" for n, c, d in PARAMS])
def test_backend(benchmark, name, case, dtype):
    work = runner.make_work(case, runner.DTYPES[dtype], DEVICE)
    row = runner.new_row(case, dtype, name, "cpu")
    call = runner.call(case, work, name)
    runner.judge(row, work.pick(call(runner.poisoned_out(case, work))), work)
    assert row["status"] == "ok", row["reason"]
    benchmark.group = f"{case.op} {case.shape} {dtype}"
    benchmark.extra_info.update(backend=name, threads=torch.get_num_threads(),
                                flops=case.flops)
    benchmark(call)
    benchmark.extra_info["gflops"] = round(case.flops / benchmark.stats.stats.median / 1e9, 2)
