"""The ops: signatures, input checks and reference bodies."""

from .attention import attention, reference_attention
from .gemm import gemm, reference_gemm

__all__ = ["attention", "gemm", "reference_attention", "reference_gemm"]
