"""The ``varlen_attention`` op: attention over sequences of different lengths packed into
one batch (``cu_seqlens``), with causal, sliding-window and softcap masks.

Its parts, one module each: :mod:`.api` (the record, the dispatch traits, the input
checks the serving ops share, :func:`varlen_attention`), :mod:`.numerics` (the float64
reference per sequence, the error bound, FLOPs and bytes), :mod:`.conformance` and
:mod:`.routes` (PyTorch's ``varlen_attn`` under :func:`hetero.enable`).
"""

from ..registry import OpSpec, register_op
from . import conformance, routes, torch_op
from .api import FEATURES, VarlenAttentionArgs, VarlenAttentionTraits, prepare, varlen_attention
from .numerics import error_bound, flops, min_bytes, reference, reference_kernel

SPEC = register_op(OpSpec(
    name="varlen_attention", function=varlen_attention, record=VarlenAttentionArgs,
    traits=VarlenAttentionTraits, prepare=prepare, reference=reference,
    error_bound=error_bound, flops=flops, min_bytes=min_bytes, features=FEATURES,
    reference_kernel=reference_kernel, conformance=conformance.SPEC, routes=routes.ROUTES))

__all__ = ["SPEC", "VarlenAttentionArgs", "VarlenAttentionTraits", "varlen_attention"]
