"""Simulated targets: Ascend- and MLU-class numerics on CPU tensors, before silicon.

``ascend_sim`` and ``mlu_sim`` run GEMM, scaled (int8/fp8) GEMM and attention on CPU
tensors the way their device model (:mod:`.models`, data) says the target computes them
— operand rounding, tile-chunked float32 (or int32) accumulation, scales applied as the
accumulator is read out, attention tiles bounded by a core's memory — so the error a
model would see on the target can be measured here, and they refuse, with reasons, what
the target cannot do (dtypes, low-precision encodings and scale recipes the unit does
not take, mask kinds, GQA, head dims, tiles that do not fit). They are opt-in: never in
the default order, they run when asked for by name (``backend="ascend_sim"``,
``hetero.use("mlu_sim")``).

``fp32_mode("exact" | "reduced")`` overrides a model's default for fp32 inputs.
``hetero info`` shows each model and whether the real device's PyTorch extension
(``torch_npu``, ``torch_mlu``) is importable with a device present.
"""

from __future__ import annotations

import importlib
from functools import partial

import torch

from ...kernel import Kernel, Range, Support
from ...ops.attention.api import head_dims
from ...ops.scaled_gemm.api import RECIPES
from ..base import Backend
from . import numerics
from .models import ASCEND, MLU, DeviceModel, LowPrecision
from .numerics import fp32_mode, round_mantissa

__all__ = ["ASCEND", "MLU", "DeviceModel", "LowPrecision", "SimulatedBackend", "ascend_sim",
           "fp32_mode", "mlu_sim", "real_device", "round_mantissa"]


def real_device(model: DeviceModel) -> str:
    """Whether the real target is reachable from this process, in words."""
    try:
        importlib.import_module(model.vendor_module)
    except ImportError:
        return (f"{model.vendor_module} is not installed: simulation only; the real "
                f"device cannot be reached from here")
    except Exception as exc:  # a broken vendor install must not take hetero down
        return f"{model.vendor_module} fails to import ({type(exc).__name__}: {exc})"
    device = getattr(torch, model.vendor_device, None)
    count = device.device_count() if device is not None and device.is_available() else 0
    if count:
        return (f"{model.vendor_module} with {count} {model.vendor_device} device(s): "
                f"the simulation's numbers can be compared with the real device")
    return f"{model.vendor_module} is installed but no {model.vendor_device} device is present"


class SimulatedBackend(Backend):
    """A backend that reproduces ``model``'s numerics on CPU tensors."""

    api_version = "2.0"
    device_type = "cpu"
    default = False  # runs only when asked for by name
    priority = 0

    def __init__(self, model: DeviceModel):
        self.model, self.name = model, model.name
        self.description = (f"simulated target: the numerics of a {model.models}, on CPU "
                            f"tensors (opt-in; slow by design)")

    @property
    def details(self) -> dict:
        return {**self.model.describe(), "real device": real_device(self.model)}

    def _fits(self, traits) -> list[str]:
        """The core's memory must hold one attention step's tiles."""
        d = max(traits.head_dim, traits.head_dim_v)
        if numerics.key_block(self.model, d, traits.dtype):
            return []
        return [f"head dim {d} in {str(traits.dtype).removeprefix('torch.')}: one attention "
                f"step's tiles exceed the {self.model.memory_per_core // 1024} KiB per core"]

    def _takes(self, traits) -> list[str]:
        """The unit's entry for the input encoding must list the scale recipe."""
        unit = self.model.low_precision_for(traits.dtype)
        if unit is None or traits.recipe in unit.recipes:
            return []
        order = [r for r in RECIPES if r in unit.recipes]
        return [f"{traits.recipe}-wise scales on "
                f"{str(traits.dtype).removeprefix('torch.')}: the {self.model.unit} unit's "
                f"dequantisation applies {'/'.join(order) or 'no'}-wise scales only"]

    def _scaled_gemm_support(self, cpu) -> Support:
        lps = self.model.low_precision
        recipes = set().union(*(lp.recipes for lp in lps)) if lps else set()
        features = {"bias", "float16_out", "float32_out"} | (recipes - {"tensor"})
        if any(lp.dtype is torch.int8 and lp.accumulator is torch.int32 for lp in lps):
            features.add("int32_out")  # torch._int_mm: the int32 accumulator as it is
        return Support(dtypes=frozenset(lp.dtype for lp in lps), device_types=cpu,
                       features=frozenset(features), predicate=self._takes)

    def _serving_kernels(self, attention_features: set, cpu) -> list[Kernel]:
        """varlen and paged attention through the target's attention numerics, with
        the window and softcap its operators have and the block sizes its cache takes."""
        m, serving = self.model, self.model.serving
        if serving is None:
            return []
        features = attention_features & {"causal", "gqa", "head_dim_v"}
        features |= {"window"} if serving.window else set()
        features |= {"softcap"} if serving.softcap else set()
        if serving.window and "mask_bool" not in attention_features and \
                "mask_additive" not in attention_features:
            features.discard("window")  # the window is a mask to the unit
        limits = head_dims(m.head_dim_multiple, m.head_dim_max, m.head_dim_multiple)
        return [
            Kernel("varlen_attention", "flash", partial(numerics.varlen_attention, m),
                   Support(dtypes=m.dtypes, device_types=cpu, features=frozenset(features),
                           limits=limits, predicate=self._fits)),
            Kernel("paged_attention", "paged", partial(numerics.paged_attention, m),
                   Support(dtypes=m.dtypes, device_types=cpu,
                           features=frozenset(features | {"chunked"}),
                           limits={**limits, "block_size": Range(
                               serving.block_multiple, serving.block_max,
                               serving.block_multiple)},
                           predicate=self._fits)),
        ]

    def kernels(self):
        m = self.model
        attention_features = {"head_dim_v"} | {f"mask_{k}" for k in m.mask_kinds}
        attention_features |= {"causal"} if m.causal else set()
        attention_features |= {"gqa"} if m.gqa else set()
        cpu = frozenset({"cpu"})
        return [
            Kernel("gemm", m.unit, partial(numerics.gemm, m),
                   Support(dtypes=m.dtypes, device_types=cpu,
                           features=frozenset({"bias", "batch", "float32_out"}))),
            Kernel("attention", "flash", partial(numerics.attention, m),
                   Support(dtypes=m.dtypes, device_types=cpu,
                           features=frozenset(attention_features),
                           limits=head_dims(m.head_dim_multiple, m.head_dim_max,
                                            m.head_dim_multiple),
                           predicate=self._fits)),
            *([Kernel("scaled_gemm", m.unit, partial(numerics.scaled_gemm, m),
                      self._scaled_gemm_support(cpu))] if m.low_precision else []),
            *self._serving_kernels(attention_features, cpu),
        ]


ascend_sim = SimulatedBackend(ASCEND)
mlu_sim = SimulatedBackend(MLU)
