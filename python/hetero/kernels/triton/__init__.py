"""Triton kernels: GEMM (``gemm.py``; its tuning configs in ``gemm_configs.py``, launch
planning and autotuning in ``gemm_launch.py``) and flash attention (``attention.py``,
``attention_backward.py``; configs in ``attention_configs.py``).

They run on CUDA and ROCm GPUs, and on the CPU under ``TRITON_INTERPRET=1`` (slow;
its ``tl.dot`` is wrong for bfloat16 operands, so bf16 is refused there). Importing
these modules imports triton: :mod:`hetero.backends.triton` does so lazily.
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


def interpreter_numpy_fix() -> None:
    """Backport of triton PR #9172 (issue #9171) for the interpreter of triton <= 3.6
    under numpy >= 2.4: a scalar is a 1-element array there, and ``int()`` of one now
    raises, so every loop with run-time bounds (``range(0, tl.cdiv(K, BLOCK_K))``)
    fails. The launchers call it before each interpreted launch; it patches once, only
    where that numpy needs it, and changes nothing else."""
    import numpy as np
    from triton.runtime import interpreter as ti

    original = ti._patch_lang_tensor
    if getattr(original, "hetero_fixed", False):
        return
    try:
        int(np.zeros(1, dtype=np.int32))
        return  # this numpy still converts 1-element arrays
    except TypeError:
        pass

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    patched.hetero_fixed = True
    ti._patch_lang_tensor = patched
