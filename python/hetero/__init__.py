"""hetero: one op API (GEMM, attention, ...) over many kernel backends.

>>> import hetero, torch
>>> y = hetero.gemm(torch.randn(8, 16), torch.randn(16, 4))   # best backend for cpu
>>> print(hetero.explain("gemm", torch.randn(8, 16), torch.randn(16, 4)))
>>> hetero.list_ops()     # ['gemm', 'attention', 'scaled_gemm', 'varlen_attention', 'paged_attention']
"""

from __future__ import annotations

from importlib import metadata as _metadata

from .auditing import AuditReport, audit
from .backends.base import PLUGIN_API, Backend, DevicePeaks
from .counters import Stats, reset_stats, stats
from .dispatch import (Decision, fallback_policy, reload, set_fallback_policy, set_tuned_table,
                       tuned_table, use)
from .enable import disable, enable, enabled, is_enabled
from .errors import (DispatchError, FallbackError, HeteroConfigWarning, HeteroError,
                     HeteroFallbackWarning, HeteroWarning)
from .explain import explain
from .info import info
from .kernel import Kernel, Range, Support
from .ops import OpSpec, list_ops, register_op, unregister_op
# The built-in ops register as they are imported: gemm, attention, scaled_gemm,
# varlen_attention, paged_attention (the order of list_ops() and of the conformance
# suite's cases).
from .ops.gemm import gemm, reference_gemm  # noqa: I001
from .ops.gemm import api as _gemm_api
from .ops.gemm import torch_op as _gemm_torch_op
from .ops.attention import attention, reference_attention
from .ops.attention import api as _attention_api
from .ops.attention import torch_op as _attention_torch_op
from .ops.scaled_gemm import scaled_gemm
from .ops.scaled_gemm import api as _scaled_gemm_api
from .ops.varlen_attention import varlen_attention
from .ops.paged_attention import paged_attention, write_kv_cache
from .ops.paged_attention import api as _paged_attention_api
from .ops.paged_attention import kv_cache as _kv_cache
from .registry import register as register_backend
from .registry import unregister as unregister_backend

from . import calibration  # noqa: E402,I001 - installs self-calibration in dispatch
from . import distributed, native_entries  # noqa: E402,I001

distributed.install_if_loaded()  # DTensor already in use: the ops' sharding rules now
_gemm_api.native_gemm = native_entries.gemm_entry()  # hetero.gemm's common case, native
_gemm_torch_op.native_gemm_op = native_entries.gemm_op_entry()  # and torch.ops.hetero.gemm's
_scaled_gemm_api.native_scaled_gemm = native_entries.scaled_gemm_entry()  # and scaled_gemm's
_attention_api.native_attention = native_entries.attention_entry()  # no out, backend
_attention_torch_op.native_attention_op = native_entries.attention_op_entry()  # its torch op
_paged_attention_api.native_paged_attention = native_entries.paged_attention_entry()  # decode
_kv_cache.native_write_kv_cache = native_entries.write_kv_cache_entry()  # and its cache write

try:
    __version__ = _metadata.version("hetero")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "PLUGIN_API", "AuditReport", "Backend", "Decision", "DevicePeaks", "DispatchError",
    "FallbackError", "HeteroConfigWarning", "HeteroError", "HeteroFallbackWarning",
    "HeteroWarning", "Kernel", "OpSpec", "Range", "Stats", "Support", "attention", "audit",
    "disable", "enable", "enabled", "explain", "fallback_policy", "gemm", "info",
    "is_enabled", "list_ops", "reference_attention", "reference_gemm", "register_backend",
    "paged_attention", "register_op", "reload", "reset_stats", "scaled_gemm",
    "set_fallback_policy", "set_tuned_table", "stats", "tuned_table", "unregister_backend",
    "unregister_op", "use", "varlen_attention", "write_kv_cache",
]
