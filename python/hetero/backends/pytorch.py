"""The ``torch`` backend: PyTorch's own kernels (``torch.matmul``/``addmm``,
``scaled_dot_product_attention``, ...), on any device, as a candidate like any other.

Each op brings PyTorch's way of computing it (``OpSpec.torch_kernels``, in the op's
``pytorch.py``) with its declared support, so the reasons, ``hetero explain`` and the
conformance suite treat it like every backend. It sits after the native backends in
every device's default order; measurement (the tuned table, self-calibration) puts it
first where it is faster on this machine, and ``backend="torch"`` asks for it by name.
Under :func:`hetero.enable`, a call it is chosen for runs as the model wrote it —
PyTorch's own function and autograd, no hetero operator in between — and is counted as
served by ``torch.<kernel>``.
"""

from __future__ import annotations

from ..ops import registry as op_registry
from .base import Backend

NAME = "torch"


class TorchBackend(Backend):
    name = NAME
    api_version = "2.0"
    device_type = "any"
    priority = 10
    description = "PyTorch's own kernels (matmul family, scaled_dot_product_attention)"

    def kernels(self):
        return [k for spec in op_registry.specs() for k in spec.torch_kernels]


backend = TorchBackend()
