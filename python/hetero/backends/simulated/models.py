"""Device models of the simulated targets, as data.

A model says what a target's matrix unit consumes and how it adds, and what its
attention operator accepts. The values below are *models* of two classes of parts,
collected from public vendor material — an Ascend 910B-class AI Core (16×16×16 "fractal"
cube tiles, fp32 inputs computed in a reduced-mantissa HF32 mode unless exact fp32 is
asked for, a boolean attention mask, 192 KiB unified buffer per core) and an MLU370-class
core (modelled here with 32×32×32 tiles, exact fp32, additive masks only, head dims 64
and 128, no GQA, 512 KiB NRAM) — not vendor specifications. A vendor edits the data to
match their part; the kernels in :mod:`.numerics` follow whatever it says.

For ``scaled_gemm`` each model lists the low-precision encodings its matrix unit takes
(:class:`LowPrecision`): the Ascend-class cube takes int8 (int32 accumulator) and OCP
fp8 e4m3fn/e5m2 (float32 accumulator) in 16×16×32 tiles, with tensor- and row-wise
scales applied once per output on the way out of the accumulator — no block-wise (per
128-deep K block) scales and no FNUZ encodings; the MLU-class core takes int8 only
(32×32×64 tiles, int32 accumulator, tensor- and row-wise scales) and no fp8.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...ops.scaled_gemm.api import RECIPES  # the scale recipes a unit may apply


@dataclass(frozen=True)
class LowPrecision:
    """How a matrix unit takes one low-precision (quantised) input encoding.

    dtype: the encoding (``torch.int8``, ``torch.float8_e4m3fn``...); ``a`` and ``b``
        are both of it. Products of two such values are exact.
    tile: ``(m, n, k)`` of one unit operation on it (8-bit operands usually pack twice
        the ``k`` of a 16-bit tile); the reduction runs in ``k``-long chunks.
    accumulator: ``torch.int32`` (each chunk's exact integer sum added into an int32
        accumulator, wrapping as two's complement) or ``torch.float32`` (each chunk's
        exact sum added with one float32 rounding, as the 16-bit path does).
    recipes: the scale recipes (:data:`RECIPES`) the dequantisation stage applies as
        the accumulator is read out: the accumulator converted to float32, multiplied by
        ``scale_a`` then ``scale_b`` and the bias added, one float32 rounding each (for
        ``block``, once per 128-deep K block, the blocks summed in float32), then one
        rounding to the output dtype.
    """

    dtype: torch.dtype
    tile: tuple[int, int, int]
    accumulator: torch.dtype
    recipes: frozenset[str]

    def describe(self) -> str:
        order = [r for r in RECIPES if r in self.recipes]
        return (f"{'×'.join(map(str, self.tile))} tiles, "
                f"{str(self.accumulator).removeprefix('torch.')} accumulator, "
                f"{'/'.join(order)}-wise scales")


@dataclass(frozen=True)
class Serving:
    """What a target's serving attention operators take: the paged cache's block sizes
    (multiples of ``block_multiple``, up to ``block_max``), and whether a sliding window
    or a logit softcap exists. Scores run through the target's attention numerics."""

    block_multiple: int
    block_max: int
    window: bool
    softcap: bool

    def describe(self) -> str:
        extras = [name for name, has in (("sliding window", self.window),
                                         ("softcap", self.softcap)) if has]
        return (f"paged blocks of {self.block_multiple}·n tokens (up to {self.block_max})"
                f"{'; ' + ', '.join(extras) if extras else ''}")


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
    low_precision: the encodings the matrix unit takes for ``scaled_gemm``, one
        :class:`LowPrecision` each; an encoding not listed is refused, as is a scale
        recipe its entry does not list.
    serving: what its serving attention operators take (``varlen_attention``,
        ``paged_attention``): a :class:`Serving`, or ``None`` for none.
    unit: the matrix unit's name (the kernels' name in ``hetero explain``).
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
    low_precision: tuple[LowPrecision, ...] = ()
    unit: str = "matmul"
    serving: Serving | None = None

    def low_precision_for(self, dtype: torch.dtype) -> LowPrecision | None:
        """The unit's entry for low-precision input ``dtype`` (``None``: not taken)."""
        return next((lp for lp in self.low_precision if lp.dtype is dtype), None)

    def describe(self) -> dict:
        return {"tile (m, n, k)": "×".join(map(str, self.tile)),
                "accumulate": "float32, one rounding per k tile",
                "fp32 inputs": (f"reduced to {self.fp32_mantissa_bits} mantissa bits"
                                if self.fp32_mode == "reduced" else "exact")
                + " by default",
                "attention masks": ", ".join(sorted(self.mask_kinds)) or "none",
                "memory per core": f"{self.memory_per_core // 1024} KiB",
                "scaled_gemm inputs": "; ".join(
                    f"{str(lp.dtype).removeprefix('torch.')}: {lp.describe()}"
                    for lp in self.low_precision) or "none",
                "serving attention": self.serving.describe() if self.serving else "none"}


ASCEND = DeviceModel(
    name="ascend_sim", models="Ascend 910B-class AI Core (cube unit)",
    vendor_module="torch_npu", vendor_device="npu",
    dtypes=frozenset({torch.float16, torch.bfloat16, torch.float32}),
    tile=(16, 16, 16), fp32_mode="reduced", fp32_mantissa_bits=10,
    head_dim_max=256, head_dim_multiple=16, mask_kinds=frozenset({"bool"}),
    causal=True, gqa=True, memory_per_core=192 * 1024, unit="cube",
    low_precision=(
        LowPrecision(torch.int8, tile=(16, 16, 32), accumulator=torch.int32,
                     recipes=frozenset({"tensor", "row"})),
        LowPrecision(torch.float8_e4m3fn, tile=(16, 16, 32), accumulator=torch.float32,
                     recipes=frozenset({"tensor", "row"})),
        LowPrecision(torch.float8_e5m2, tile=(16, 16, 32), accumulator=torch.float32,
                     recipes=frozenset({"tensor", "row"}))),
    serving=Serving(block_multiple=128, block_max=512, window=True, softcap=False))

MLU = DeviceModel(
    name="mlu_sim", models="MLU370-class core",
    vendor_module="torch_mlu", vendor_device="mlu",
    dtypes=frozenset({torch.float16, torch.bfloat16, torch.float32}),
    tile=(32, 32, 32), fp32_mode="exact", fp32_mantissa_bits=23,
    head_dim_max=128, head_dim_multiple=64, mask_kinds=frozenset({"additive"}),
    causal=True, gqa=False, memory_per_core=512 * 1024,
    low_precision=(
        LowPrecision(torch.int8, tile=(32, 32, 64), accumulator=torch.int32,
                     recipes=frozenset({"tensor", "row"})),),
    serving=Serving(block_multiple=16, block_max=1024, window=False, softcap=False))
