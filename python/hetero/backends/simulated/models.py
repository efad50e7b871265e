"""Device models of the simulated targets, as data.

A model says what a target's matrix unit consumes and how it adds, and what its
attention operator accepts. The values below are *models* of two classes of parts,
collected from public vendor material — an Ascend 910B-class AI Core (16×16×16 "fractal"
cube tiles, fp32 inputs computed in a reduced-mantissa HF32 mode unless exact fp32 is
asked for, a boolean attention mask, 192 KiB unified buffer per core) and an MLU370-class
core (modelled here with 32×32×32 tiles, exact fp32, additive masks only, head dims 64
and 128, no GQA, 512 KiB NRAM) — not vendor specifications. A vendor edits the data to
match their part; the kernels in :mod:`.numerics` follow whatever it says.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DeviceModel:
    """What the simulated kernels reproduce and refuse.

    tile: ``(m, n, k)`` of one matrix-unit operation; operands are zero-padded to whole
        tiles and the reduction is split into ``k``-long chunks.
    fp32_mode: how fp32 inputs are computed by default: ``"reduced"`` (operands rounded
        to ``fp32_mantissa_bits`` explicit mantissa bits, round-to-nearest-even, as
        HF32/TF32 do) or ``"exact"``; :func:`hetero.backends.simulated.fp32_mode`
        overrides it.
    Each ``k`` chunk's products are summed with one rounding into the float32
    accumulator (a wide adder inside the unit, float32 between tiles).
    memory_per_core: bytes that must hold one attention step's tiles (a 16-row query
        tile, a key and a value tile, the fp32 score and probability tiles); the key
        tile length follows from it, and a head dim for which even a ``tile.n``-long
        key tile does not fit is refused.
    """

    name: str
    models: str  # the class of part this models
    vendor_module: str  # the PyTorch extension of the real device
    vendor_device: str  # its torch device type
    dtypes: frozenset[torch.dtype]
    tile: tuple[int, int, int]
    fp32_mode: str
    fp32_mantissa_bits: int
    head_dim_max: int
    head_dim_multiple: int
    mask_kinds: frozenset[str]  # "bool", "additive"
    causal: bool  # a causal mode flag exists
    gqa: bool  # K/V heads may be fewer than query heads
    memory_per_core: int
    max_key_block: int = 512

    def describe(self) -> dict:
        return {"tile (m, n, k)": "×".join(map(str, self.tile)),
                "accumulate": "float32, one rounding per k tile",
                "fp32 inputs": (f"reduced to {self.fp32_mantissa_bits} mantissa bits"
                                if self.fp32_mode == "reduced" else "exact")
                + " by default",
                "attention masks": ", ".join(sorted(self.mask_kinds)) or "none",
                "memory per core": f"{self.memory_per_core // 1024} KiB"}


ASCEND = DeviceModel(
    name="ascend_sim", models="Ascend 910B-class AI Core (cube unit)",
    vendor_module="torch_npu", vendor_device="npu",
    dtypes=frozenset({torch.float16, torch.bfloat16, torch.float32}),
    tile=(16, 16, 16), fp32_mode="reduced", fp32_mantissa_bits=10,
    head_dim_max=256, head_dim_multiple=16, mask_kinds=frozenset({"bool"}),
    causal=True, gqa=True, memory_per_core=192 * 1024)

MLU = DeviceModel(
    name="mlu_sim", models="MLU370-class core",
    vendor_module="torch_mlu", vendor_device="mlu",
    dtypes=frozenset({torch.float16, torch.bfloat16, torch.float32}),
    tile=(32, 32, 32), fp32_mode="exact", fp32_mantissa_bits=23,
    head_dim_max=128, head_dim_multiple=64, mask_kinds=frozenset({"additive"}),
    causal=True, gqa=False, memory_per_core=512 * 1024)
