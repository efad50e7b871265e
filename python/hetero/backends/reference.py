"""The reference backend: plain torch ops on any device, every dtype and feature, for
every registered op.

It is the last resort of every default order and the oracle the others are checked
against; it takes every dtype an op declares (``OpSpec.dtypes``). Each op's kernel here is the op's own ``reference_kernel`` (or, by default,
its ``reference`` computed in float32 — float64 for float64 inputs — and rounded once
into ``out``).
"""

from __future__ import annotations

from ..kernel import Kernel, Support
from ..ops._checks import compute_dtype
from ..ops import registry as op_registry
from .base import Backend


def _default_kernel(spec):
    def run(args):
        args.out.copy_(spec.reference(args, compute_dtype(args[0].dtype)))
    return run


class ReferenceBackend(Backend):
    name = "reference"
    api_version = "2.0"
    device_type = "any"
    priority = -1000
    description = "plain torch ops in float32/float64; the oracle and last resort"

    def kernels(self):
        return [Kernel(spec.name, "torch", spec.reference_kernel or _default_kernel(spec),
                       Support(dtypes=frozenset(spec.dtypes), features=frozenset(spec.features)),
                       backward=spec.reference_backward)
                for spec in op_registry.specs()]


backend = ReferenceBackend()
