"""The ``scaled_gemm`` op: ``out = (a · scale_a) @ (b · scale_b) + bias`` on fp8 or int8
inputs, with ``torch._scaled_mm``'s meaning (tensor-, row- and block-wise scales).

Its parts, one module each: :mod:`.api` (the record, the dispatch traits, the scale
recipes, input checks, :func:`scaled_gemm`), :mod:`.numerics` (the float64 reference,
the error bound, FLOPs and bytes, the numerics at the edges), :mod:`.conformance`,
:mod:`.bench`, :mod:`.torch_op` (``torch.ops.hetero.scaled_gemm``), :mod:`.routes`
(``torch._scaled_mm`` and ``torch._int_mm`` under :func:`hetero.enable`) and
:mod:`.pytorch` (PyTorch's own kernels, for the ``torch`` backend).
"""

from ..registry import OpSpec, register_op
from . import bench, conformance, pytorch, routes
from .api import BUCKET_DIMS, FEATURES, INPUT_DTYPES, ScaledGemmArgs, ScaledGemmTraits
from .api import prepare, scaled_gemm
from .numerics import error_bound, flops, min_bytes, reference, reference_kernel

SPEC = register_op(OpSpec(
    name="scaled_gemm", function=scaled_gemm, record=ScaledGemmArgs, traits=ScaledGemmTraits,
    prepare=prepare, reference=reference, error_bound=error_bound, flops=flops,
    min_bytes=min_bytes, features=FEATURES, bucket_dims=BUCKET_DIMS, dtypes=INPUT_DTYPES,
    reference_kernel=reference_kernel, torch_kernels=pytorch.KERNELS,
    conformance=conformance.SPEC, bench=bench.SPEC, routes=routes.ROUTES))

__all__ = ["SPEC", "ScaledGemmArgs", "ScaledGemmTraits", "scaled_gemm"]
