"""The ``template`` backend: what hetero needs from a backend, and nothing else.

- ``name`` (the entry point's name too), ``device_type`` (the torch device type its
  kernels take), ``api_version`` (the hetero plugin API it was written for),
- ``probe()``: why it cannot run here (an empty list: it can),
- ``peaks(device)`` (optional): the device's peak throughput and bandwidth, the
  denominators of ``hetero bench``'s "% of peak",
- ``kernels()``: each kernel, registered under an op's name (``hetero.list_ops()``),
  with its declared :class:`hetero.Support`: the dtypes, the op's features
  (``hetero.ops.spec(op).features``) and limits on the op's traits and sizes
  (``head_dim``, ``K``, ``Sk``...).
  Dispatch refuses, with the reason, every call outside it, and the conformance suite
  checks that it does; so declare exactly what the kernels do right.

``default = False`` keeps it out of the CPU default order: it runs only when asked for
by name (``backend="template"``). A real device backend sets its device type and
``default = True``.
"""

from __future__ import annotations

import torch

import hetero
from hetero.ops.attention import head_dims

from .kernels import attention, gemm

_DTYPES = frozenset({torch.float32, torch.float16, torch.bfloat16})
_CPU = frozenset({"cpu"})


class TemplateBackend(hetero.Backend):
    name = "template"
    device_type = "cpu"
    api_version = "2.1"
    default = False
    description = "template: an out-of-tree hetero backend"

    def probe(self) -> list[str]:
        return []  # a device backend checks its runtime and device here

    def peaks(self, device):
        # A device backend gives its datasheet figures, e.g.
        # hetero.DevicePeaks({"bfloat16": 320.0, "float32": 40.0}, 1.6, "datasheet")
        return None  # on the CPU, hetero measures the peaks itself

    def kernels(self):
        return [
            hetero.Kernel("gemm", "blocked", gemm, hetero.Support(
                dtypes=_DTYPES, device_types=_CPU,
                features=frozenset({"bias", "batch", "float32_out"}))),
            hetero.Kernel("attention", "naive", attention, hetero.Support(
                dtypes=_DTYPES, device_types=_CPU, limits=head_dims(1, 256),
                features=frozenset({"causal", "gqa", "mask_bool", "mask_additive",
                                    "head_dim_v"}))),
        ]


backend = TemplateBackend()
