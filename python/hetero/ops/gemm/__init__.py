"""The ``gemm`` op: ``out = alpha * (a @ b) + beta * bias``, batched, any strides.

Its parts, one module each: :mod:`.api` (the record kernels receive, the dispatch
traits, input checks, :func:`gemm`), :mod:`.numerics` (the float64 reference, the error
bound, FLOPs and bytes), :mod:`.checks` (operand layouts for tests),
:mod:`.conformance`, :mod:`.bench`, :mod:`.torch_op` (``torch.ops.hetero.gemm``),
:mod:`.routes` (what :func:`hetero.enable` routes here), :mod:`.sharding` (how the
torch operator shards over DTensors), :mod:`.pytorch` (PyTorch's own kernel, for the
``torch`` backend) and :mod:`.cli`.
"""

from ..registry import OpSpec, register_op
from . import bench, cli, conformance, pytorch, routes, sharding, torch_op
from .api import BUCKET_DIMS, FEATURES, GemmArgs, GemmTraits, gemm, prepare
from .numerics import error_bound, flops, min_bytes, reference, reference_gemm

SPEC = register_op(OpSpec(
    name="gemm", function=gemm, record=GemmArgs, traits=GemmTraits, prepare=prepare,
    reference=reference, error_bound=error_bound, flops=flops, min_bytes=min_bytes,
    features=FEATURES, bucket_dims=BUCKET_DIMS, torch_kernels=pytorch.KERNELS,
    conformance=conformance.SPEC, bench=bench.SPEC, routes=routes.ROUTES, cli=cli.SPEC,
    sharding={torch_op.gemm._opoverload: sharding.strategies}))

__all__ = ["SPEC", "GemmArgs", "GemmTraits", "gemm", "reference_gemm"]
