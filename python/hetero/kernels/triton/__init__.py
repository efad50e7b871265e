"""Triton kernels: GEMM (``gemm.py``) and flash attention (``attention.py``).

They run on CUDA and ROCm GPUs, and on the CPU under ``TRITON_INTERPRET=1`` (slow;
its ``tl.dot`` is wrong for bfloat16 operands, so bf16 is refused there). Importing
these modules imports triton: :mod:`hetero.backends.triton` does so lazily.
"""

import os


def interpreting() -> bool:
    """True when Triton runs kernels on the CPU through its interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
