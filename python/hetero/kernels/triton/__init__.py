"""Triton kernels: GEMM (``gemm.py``; its tuning configs in ``gemm_configs.py``, the
planning of a call in ``gemm_plan.py``) and flash attention (``attention.py``,
``attention_backward.py``; their shared device helpers in ``common.py``, configs in
``attention_configs.py``) and scaled fp8/int8 GEMM (``scaled_gemm.py``). Every kernel launches through ``launch.py``: the interpreter,
fixed configs, autotuning over a config table, the first fitting config.

They run on CUDA and ROCm GPUs, and on the CPU under ``TRITON_INTERPRET=1`` (slow;
its ``tl.dot`` is wrong for bfloat16 operands, so bf16 is refused there). Importing
these modules imports triton: :mod:`hetero.backends.triton` does so lazily. This
package module itself imports torch only, and none of its submodules.
"""

import os

import torch


def interpreting() -> bool:
    """True when Triton runs kernels on the CPU through its interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def gpu_platform() -> str:
    """``"hip"`` on ROCm builds of torch, else ``"cuda"``: which config tables apply."""
    return "hip" if torch.version.hip is not None else "cuda"


def next_pow2(x: int) -> int:
    """The smallest power of two >= ``x`` (1 for ``x <= 1``): autotuning buckets."""
    return 1 << max(0, int(x) - 1).bit_length()


def refuse_interpreter_bfloat16(dtype: torch.dtype, name: str) -> None:
    """Raise where the interpreter would silently compute garbage: its ``tl.dot``
    multiplies the raw bits of bfloat16 operands."""
    if dtype is torch.bfloat16 and interpreting():
        raise TypeError(f"{name}: bfloat16 is not supported under TRITON_INTERPRET=1 (the "
                        "interpreter's tl.dot multiplies the raw bfloat16 bits); use "
                        "float16 or float32, or a GPU")
