"""hetero: one op API (GEMM, attention) over many kernel backends.

>>> import hetero, torch
>>> y = hetero.gemm(torch.randn(8, 16), torch.randn(16, 4))   # best backend for cpu
>>> print(hetero.explain("gemm", torch.randn(8, 16), torch.randn(16, 4)))
"""

from __future__ import annotations

from importlib import metadata as _metadata

from . import torch_ops  # registers torch.ops.hetero.*
from .backends.base import PLUGIN_API, Backend
from .counters import Stats, reset_stats, stats
from .dispatch import (Decision, fallback_policy, reload, set_fallback_policy, set_tuned_table,
                       tuned_table, use)
from .enable import disable, enable, enabled, is_enabled
from .errors import (DispatchError, FallbackError, HeteroConfigWarning, HeteroError,
                     HeteroFallbackWarning, HeteroWarning)
from .explain import explain
from .info import info
from .kernel import Kernel, Support
from .ops import attention, gemm, reference_attention, reference_gemm
from .registry import register as register_backend
from .registry import unregister as unregister_backend

try:
    __version__ = _metadata.version("hetero")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "PLUGIN_API", "Backend", "Decision", "DispatchError", "FallbackError", "HeteroConfigWarning",
    "HeteroError", "HeteroFallbackWarning", "HeteroWarning", "Kernel", "Stats", "Support",
    "attention", "disable", "enable", "enabled", "explain", "fallback_policy", "gemm",
    "info", "is_enabled", "reference_attention", "reference_gemm", "register_backend",
    "reload", "reset_stats", "set_fallback_policy", "set_tuned_table", "stats", "torch_ops",
    "tuned_table", "unregister_backend", "use",
]
