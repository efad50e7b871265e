"""How tensors cross into hetero's native modules: ``(data_ptr, dtype code, sizes,
strides)`` tuples, strides in elements. Launchers never see torch, so one build
serves every torch version."""

from __future__ import annotations

import torch

#: dtype codes of ``csrc/hetero/dtype.h`` (part of the native ABI: never renumbered).
DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2, torch.float64: 3,
               torch.bool: 4, torch.float8_e4m3fn: 5, torch.float8_e5m2: 6,
               torch.float8_e4m3fnuz: 7, torch.float8_e5m2fnuz: 8, torch.int8: 9,
               torch.int32: 10}


def view(t: torch.Tensor) -> tuple:
    """The framework-free description of ``t`` that native launchers take."""
    return (t.data_ptr(), DTYPE_CODES[t.dtype], tuple(t.shape), t.stride())


def optional_view(t: torch.Tensor | None) -> tuple | None:
    """:func:`view` of ``t``, or ``None``."""
    return None if t is None else view(t)
