"""The ``attention`` op: ``softmax(q @ k^T * scale + mask) @ v`` with GQA, causal
(bottom-right), bool and additive masks, and a backward.

Its parts, one module each: :mod:`.api` (the record kernels receive, the dispatch
traits, input checks, :func:`attention`), :mod:`.numerics` (the float64 reference
forward and backward, the error bound, FLOPs and bytes), :mod:`.checks` (inputs and
forward/backward checks for tests), :mod:`.conformance`, :mod:`.bench`,
:mod:`.torch_op` (``torch.ops.hetero.attention`` and its forward/backward pair),
:mod:`.routes` (what :func:`hetero.enable` routes here), :mod:`.sharding` (how its
torch operators shard over DTensors), :mod:`.pytorch` (PyTorch's own kernel, for the
``torch`` backend) and :mod:`.cli`.
"""

from ..registry import OpSpec, register_op
from . import bench, cli, conformance, pytorch, routes, sharding, torch_op
from .api import BUCKET_DIMS, FEATURES, AttentionArgs, AttentionTraits, attention, head_dims, prepare
from .numerics import (error_bound, flops, min_bytes, reference, reference_attention,
                       reference_backward, reference_kernel)

SPEC = register_op(OpSpec(
    name="attention", function=attention, record=AttentionArgs, traits=AttentionTraits,
    prepare=prepare, reference=reference, error_bound=error_bound, flops=flops,
    min_bytes=min_bytes, features=FEATURES, bucket_dims=BUCKET_DIMS,
    reference_kernel=reference_kernel, reference_backward=reference_backward,
    torch_kernels=pytorch.KERNELS, conformance=conformance.SPEC, bench=bench.SPEC,
    routes=routes.ROUTES, cli=cli.SPEC,
    sharding={torch_op.attention_forward._opoverload: sharding.forward_strategies,
              torch_op.attention_backward._opoverload: sharding.backward_strategies}))

__all__ = ["SPEC", "AttentionArgs", "AttentionTraits", "attention", "head_dims",
           "reference_attention"]
