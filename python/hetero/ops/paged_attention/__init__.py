"""The ``paged_attention`` op: new queries (one decode token, or several per sequence)
over keys and values in a paged cache addressed by a block table; and
:func:`write_kv_cache`, which fills such a cache.

Its parts, one module each: :mod:`.api` (the record, the dispatch traits, the input
checks, :func:`paged_attention`), :mod:`.numerics` (the float64 reference from the
gathered pages, the error bound, FLOPs and bytes), :mod:`.conformance` and
:mod:`.kv_cache`.
"""

from ..registry import OpSpec, register_op
from . import conformance
from .api import FEATURES, PagedAttentionArgs, PagedAttentionTraits, paged_attention, prepare
from .kv_cache import write_kv_cache
from .numerics import error_bound, flops, min_bytes, reference, reference_kernel

SPEC = register_op(OpSpec(
    name="paged_attention", function=paged_attention, record=PagedAttentionArgs,
    traits=PagedAttentionTraits, prepare=prepare, reference=reference,
    error_bound=error_bound, flops=flops, min_bytes=min_bytes, features=FEATURES,
    reference_kernel=reference_kernel, conformance=conformance.SPEC))

__all__ = ["SPEC", "PagedAttentionArgs", "PagedAttentionTraits", "paged_attention",
           "write_kv_cache"]
