"""The CPU kernel sets: every test that takes the ``isa`` fixture runs once per set this
build and CPU run (``portable``, ``avx2``, ``avx512``, ``amx`` where the CPU has them), so a
lower set stays tested on a higher machine."""

from __future__ import annotations

import pytest

from hetero import _C

CPU_ISAS = _C.cpu_isas().split(",")


@pytest.fixture(params=CPU_ISAS)
def isa(request):
    previous = _C.set_cpu_isa(request.param)
    yield request.param
    _C.set_cpu_isa(previous)
