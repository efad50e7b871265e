"""The native CPU backend: kernels from ``hetero._C`` (``backends/cpu/`` in C++).

The Python side only turns tensors into ``(data_ptr, dtype code, sizes, strides)``
views; the C++ launchers validate them again and never see torch.
"""

from __future__ import annotations

import torch

from .. import dispatch
from ..kernel import Kernel, Support
from .base import Backend

try:
    from .. import _C
    _IMPORT_ERROR = None
    _CODES = {torch.float32: int(_C.DType.float32), torch.float16: int(_C.DType.float16),
              torch.bfloat16: int(_C.DType.bfloat16), torch.float64: int(_C.DType.float64)}
except ImportError as exc:  # reported by probe(), never fatal
    _C, _IMPORT_ERROR, _CODES = None, exc, {}


def view(t: torch.Tensor) -> tuple:
    """The framework-free description of ``t`` that native launchers take."""
    return (t.data_ptr(), _CODES[t.dtype], tuple(t.shape), t.stride())


def num_threads() -> int:
    """Threads the native kernels use: ``HETERO_NUM_THREADS`` if set, else
    ``torch.get_num_threads()`` (read at every call, so ``torch.set_num_threads``
    applies at once)."""
    return dispatch._settings.num_threads or torch.get_num_threads()


def _gemm(a, b, bias, alpha, beta, out):
    _C.gemm(view(a), view(b), view(out), None if bias is None else view(bias), alpha, beta,
            num_threads())


class CpuBackend(Backend):
    name = "cpu"
    device_type = "cpu"
    priority = 100
    description = "native C++ kernels (hetero._C)"

    def probe(self):
        if _IMPORT_ERROR is not None:
            return [f"native module hetero._C is not built or failed to import: "
                    f"{_IMPORT_ERROR}"]
        return []

    def kernels(self):
        return (
            Kernel("gemm", "gemm", _gemm, Support(
                dtypes=frozenset({torch.float32, torch.float16, torch.bfloat16}),
                device_types=frozenset({"cpu"}),
                features=frozenset({"bias", "batch", "float32_out"}))),
        )


backend = CpuBackend()
