"""Scaled low-precision GEMM in Triton: ``out = (a · scale_a) @ (b · scale_b) + bias`` on
fp8 or int8 inputs, as ``hetero.scaled_gemm`` (and ``torch._scaled_mm``) define it.

Shapes (:class:`hetero.ops.scaled_gemm.ScaledGemmArgs`): ``a (M, K)``, ``b (K, N)``, any
strides (``b`` is usually ``w.t()`` of a row-major weight); scales float32, any strides,
in the recipe's 2-D shape — ``tensor`` ``(1, 1)`` each, ``row`` ``(M, 1)`` and ``(1, N)``,
``block`` ``(M, K/128)`` and ``(K/128, ceil(N/128))`` with K a multiple of 128; ``bias``
``None`` or ``(N,)``; ``out (M, N)`` bfloat16/float16/float32, or int32 for int8 without
scales (``torch._int_mm``).

Algorithm: gemm.py's tiling (``(BLOCK_M, BLOCK_N)`` output tiles in grouped order,
marching along K in ``BLOCK_K`` steps of ``tl.dot``), with the scales in the epilogue:

* ``tensor``/``row``: one accumulator over all of K — float32 for fp8, int32 for int8
  (exact while K <= 2**17; longer int8 sums with a float result go tile by tile, see
  ``PER_TILE``) — scaled once per output by ``sa[m] * sb[n]``;
* ``block``: ``BLOCK_K`` divides 128, so every K tile lies in one scale block: each
  tile's dot is a fresh partial sum, added to the float32 accumulator times
  ``sa[m, kb] * sb[kb, n // 128]`` (the DeepSeek-V3 / vLLM block-fp8 scheme);

then ``+ bias`` and one rounding to ``out``'s dtype.

How the operands reach ``tl.dot`` (``OPERANDS``, picked per call by :func:`_operands`):

* ``NATIVE_FP8``: fp8 tiles straight into ``tl.dot`` (tensor cores: NVIDIA sm89+ for
  e4m3fn/e5m2; AMD MI300 (gfx942) for the FNUZ types, gfx950 for the OCP ones), with
  ``max_num_imprecise_acc=0``: on sm90 Triton otherwise lets wgmma's reduced-precision
  fp8 accumulator run over the whole of K; 0 adds every dot into float32 registers;
* ``FP8_BITS``: the bytes decoded to exact float16 in the kernel (every value of the
  four formats is exact in float16), then a float16 dot. The interpreter always takes
  it — its fp8 casts and fp8 ``tl.dot`` map NaN encodings (e4m3fn ``0x7f``, FNUZ
  ``0x80``) and e5m2's infinities to finite numbers — and so do GPUs whose Triton has
  no fp8 dot for the format (FNUZ on NVIDIA, OCP on MI300);
* ``INT8``: an int8 dot into an int32 accumulator.

Also for the interpreter only: its float32 -> bfloat16 cast truncates, so a bfloat16
``out`` (and bias) travel as int16 bits, rounded to nearest-even in the kernel.

Configs: ``triton.autotune`` over the platform's table (keyed on bucketed sizes, the
operand layouts and the recipe; small problems take the first config that fits), every
BLOCK_K a power of two from 32 (the fp8/int8 ``tl.dot``'s smallest K) to 128.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from . import gpu_platform, interpreting, next_pow2
from .gemm import _load, _tile_coords
from .launch import Tuning, device_limits, run

TENSOR, ROW, BLOCK = 0, 1, 2  # RECIPE
NATIVE_FP8, FP8_BITS, INT8 = 0, 1, 2  # OPERANDS
_RECIPES = {"tensor": TENSOR, "row": ROW, "block": BLOCK}
#: fp8 formats as (mantissa bits, exponent bias, specials): 0 e4m3fn (NaN 0x7f/0xff),
#: 1 e5m2 (IEEE: exponent 31 is inf or NaN), 2 FNUZ (0x80 is the only NaN).
_FORMATS = {torch.float8_e4m3fn: (3, 7, 0), torch.float8_e5m2: (2, 15, 1),
            torch.float8_e4m3fnuz: (3, 8, 2), torch.float8_e5m2fnuz: (2, 16, 2)}
_OCP = (torch.float8_e4m3fn, torch.float8_e5m2)
_INT_EXACT_K = 2**17  # int8 products are <= 2**14 in magnitude: int32 sums of 2**17 fit


# ---------------------------------------------------------------------------------------
# Configs, as data
# ---------------------------------------------------------------------------------------

class Tile(NamedTuple):
    """``BLOCK_M x BLOCK_N`` output tiles, K steps of ``BLOCK_K`` (a power of two in
    [32, 128]: it must divide the block recipe's 128), ``GROUP_M`` tile-rows per group."""

    block_m: int
    block_n: int
    block_k: int
    group_m: int
    num_warps: int
    num_stages: int
    options: tuple = ()

    def meta(self) -> dict:
        return {"BLOCK_M": self.block_m, "BLOCK_N": self.block_n, "BLOCK_K": self.block_k,
                "GROUP_M": self.group_m}


_T = Tile
_HIP = (("matrix_instr_nonkdim", 16),)
#: NVIDIA: 1-byte operands, so K steps are twice gemm's for the same bytes per stage.
CUDA_CONFIGS = [
    # Decode-like M (<= 32): stream b at full bandwidth; narrow N tiles fill the SMs.
    _T(16, 64, 128, 8, 4, 5), _T(16, 128, 128, 8, 4, 4), _T(32, 64, 128, 8, 4, 4),
    _T(32, 128, 128, 8, 4, 4),
    # Medium M.
    _T(64, 64, 128, 8, 4, 4), _T(64, 128, 128, 8, 4, 4), _T(128, 64, 128, 8, 4, 4),
    # Compute-bound: two warpgroups of wgmma m64n256 (Hopper), 3-4 stages of 48 KiB.
    _T(128, 256, 128, 8, 8, 3), _T(128, 256, 64, 8, 8, 4), _T(256, 128, 128, 8, 8, 3),
    _T(128, 128, 128, 8, 8, 3), _T(128, 128, 64, 8, 4, 4),
    _T(64, 64, 64, 8, 4, 3), _T(32, 32, 32, 8, 4, 2),  # small fallbacks
]
#: AMD: the stream pipeliner wants num_stages=2; 64 KiB of LDS favours deep K over stages.
HIP_CONFIGS = [
    _T(16, 64, 128, 8, 4, 2, _HIP + (("waves_per_eu", 2),)),
    _T(32, 64, 128, 8, 4, 2, _HIP + (("waves_per_eu", 2),)),
    _T(64, 128, 128, 8, 4, 2, _HIP + (("waves_per_eu", 2),)),
    _T(128, 128, 128, 8, 8, 2, _HIP + (("waves_per_eu", 1),)),
    _T(256, 128, 128, 8, 8, 2, _HIP + (("waves_per_eu", 1),)),
    _T(128, 256, 128, 8, 8, 2, _HIP + (("waves_per_eu", 1),)),
    _T(32, 32, 32, 8, 4, 2),
]
INTERPRETER_CONFIGS = [_T(32, 32, 32, 4, 4, 1)]  # no tuning: each program is numpy
SAFE_CONFIG = _T(64, 64, 64, 8, 4, 3)
AUTOTUNE_MIN_WORK = 1 << 24  # M * N * K at or below this: the first fitting config


def fitting(table, args) -> list[Tile]:
    """Configs of ``table`` for this call: tiles no larger than the problem needs, at
    least a quarter of the SMs busy where possible, within shared memory."""
    m, n, k = args["M"], args["N"], args["K"]
    smem, sms, _ = device_limits(args["a_ptr"].device.index)
    caps = [max(16, next_pow2(x)) for x in (m, n, k)]
    stages = (lambda c: max(1, c.num_stages - 1)) if gpu_platform() == "hip" else \
        (lambda c: c.num_stages)
    fits = [c for c in table if smem is None
            or stages(c) * (c.block_m + c.block_n) * c.block_k <= smem]
    chosen = [c for c in fits if c.block_m <= caps[0] and c.block_n <= caps[1]
              and c.block_k <= max(32, caps[2]) and c.block_m >= min(64, m // 8)]
    if sms and chosen:
        best = min(sms, max(-(-m // c.block_m) * -(-n // c.block_n) for c in chosen))
        chosen = [c for c in chosen if 4 * -(-m // c.block_m) * -(-n // c.block_n) >= best]
    return chosen or [min(fits or table, key=lambda c: c.block_m * c.block_n * c.block_k)]


TUNING = Tuning(name="scaled_gemm", tables={"cuda": CUDA_CONFIGS, "hip": HIP_CONFIGS},
                interpreter=INTERPRETER_CONFIGS,
                keys=("M_KEY", "N_KEY", "K_KEY", "LAYOUT_KEY", "RECIPE", "HAS_BIAS"),
                prune=fitting, never_fatal=True, safe=SAFE_CONFIG)


# ---------------------------------------------------------------------------------------
# The kernel
# ---------------------------------------------------------------------------------------

@triton.jit
def _fp8_to_f16(bits, MANT: tl.constexpr, BIAS: tl.constexpr, SPECIALS: tl.constexpr):
    """fp8 bytes (uint8) -> float16, exactly, NaN and inf included: the significand
    (with its implicit 1 unless subnormal) times a power of two assembled from its
    float32 bits — integer ops and one exact multiply, no table, no rounding."""
    x = bits.to(tl.int32)
    mag = x & 0x7F
    exp = mag >> MANT
    man = mag & ((1 << MANT) - 1)
    sig = tl.where(exp == 0, man, man + (1 << MANT))
    pow2 = ((tl.maximum(exp, 1) + (127 - BIAS - MANT)) << 23).to(tl.float32, bitcast=True)
    v = sig.to(tl.float32) * pow2
    v = tl.where(x >= 0x80, -v, v)
    if SPECIALS == 0:  # e4m3fn: S.1111.111 is NaN, no infinity
        v = tl.where(mag == 0x7F, float("nan"), v)
    elif SPECIALS == 1:  # e5m2: exponent 31 is inf (mantissa 0) or NaN
        inf = tl.where(x >= 0x80, float("-inf"), float("inf"))
        v = tl.where(exp == 31, tl.where(man == 0, inf, float("nan")), v)
    else:  # FNUZ: "negative zero" 0x80 is the only NaN
        v = tl.where(x == 0x80, float("nan"), v)
    return v.to(tl.float16)


@triton.jit
def _dot(a, b, acc, OPERANDS: tl.constexpr, MANT: tl.constexpr, BIAS: tl.constexpr,
         SPECIALS: tl.constexpr):
    """``acc + a @ b`` with exact products: float32 sums, int32 for int8."""
    if OPERANDS == 2:  # INT8
        return tl.dot(a, b, acc, out_dtype=tl.int32)
    elif OPERANDS == 1:  # FP8_BITS
        return tl.dot(_fp8_to_f16(a, MANT, BIAS, SPECIALS), _fp8_to_f16(b, MANT, BIAS, SPECIALS),
                      acc)
    else:  # NATIVE_FP8
        return tl.dot(a, b, acc, max_num_imprecise_acc=0)


@triton.jit
def _bf16_bits_to_f32(bits):
    return (bits.to(tl.uint16, bitcast=True).to(tl.uint32) << 16).to(tl.float32, bitcast=True)


@triton.heuristics({
    "MASK_M": lambda args: args["M"] % args["BLOCK_M"] != 0,
    "MASK_N": lambda args: args["N"] % args["BLOCK_N"] != 0,
    "MASK_K": lambda args: args["K"] % args["BLOCK_K"] != 0,
})
@triton.jit(do_not_specialize=["M_KEY", "N_KEY", "K_KEY", "LAYOUT_KEY"])
def _scaled_gemm_kernel(
    a_ptr, b_ptr, sa_ptr, sb_ptr, bias_ptr, out_ptr,
    M, N, K,
    stride_am, stride_ak, stride_bk, stride_bn,  # a (M, K), b (K, N)
    stride_sam, stride_sak, stride_sbk, stride_sbn,  # scale_a, scale_b (2-D, recipe's shape)
    stride_c, stride_om, stride_on,  # bias (N,), out (M, N)
    M_KEY, N_KEY, K_KEY, LAYOUT_KEY,  # autotuning keys only; never read
    RECIPE: tl.constexpr, OPERANDS: tl.constexpr,
    MANT: tl.constexpr, BIAS: tl.constexpr, SPECIALS: tl.constexpr,  # FP8_BITS format
    PER_TILE: tl.constexpr,  # each K tile's dot added to a float32 sum on its own
    HAS_BIAS: tl.constexpr, INDEX_64: tl.constexpr,
    MASK_M: tl.constexpr, MASK_N: tl.constexpr, MASK_K: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    pid_m, pid_n = _tile_coords(tl.program_id(0), tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N),
                                GROUP_M)
    off_m = pid_m * BLOCK_M
    off_n = pid_n * BLOCK_N
    rm = tl.arange(0, BLOCK_M)  # (BLOCK_M,)
    rn = tl.arange(0, BLOCK_N)  # (BLOCK_N,)
    rk = tl.arange(0, BLOCK_K)  # (BLOCK_K,)
    if INDEX_64:  # some stride * extent reaches 2**31
        rm = rm.to(tl.int64)
        rn = rn.to(tl.int64)
        rk = rk.to(tl.int64)
    rows = off_m + rm
    cols = off_n + rn
    # Tile corners in 64 bits; in-tile offsets 32-bit unless INDEX_64.
    a_ptrs = a_ptr + off_m.to(tl.int64) * stride_am \
        + rm[:, None] * stride_am + rk[None, :] * stride_ak  # (BLOCK_M, BLOCK_K)
    b_ptrs = b_ptr + off_n.to(tl.int64) * stride_bn \
        + rk[:, None] * stride_bk + rn[None, :] * stride_bn  # (BLOCK_K, BLOCK_N)
    m_in = rows < M
    n_in = cols < N
    if INDEX_64:  # the pointer step per K tile, in the offsets' width
        a_step = tl.cast(BLOCK_K, tl.int64) * stride_ak
        b_step = tl.cast(BLOCK_K, tl.int64) * stride_bk
    else:
        a_step = BLOCK_K * stride_ak
        b_step = BLOCK_K * stride_bk

    if OPERANDS == 2 and not PER_TILE:  # INT8: exact int32 sums
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        k_left = K - k * BLOCK_K
        a = _load(a_ptrs, m_in[:, None], rk[None, :] < k_left, MASK_M, MASK_K)
        b = _load(b_ptrs, rk[:, None] < k_left, n_in[None, :], MASK_K, MASK_N)
        if PER_TILE:  # a fresh partial sum per tile (one scale block holds it whole)
            if OPERANDS == 2:  # INT8
                part = _dot(a, b, tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32), OPERANDS,
                            MANT, BIAS, SPECIALS).to(tl.float32)
            else:
                part = _dot(a, b, tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32), OPERANDS,
                            MANT, BIAS, SPECIALS)
            if RECIPE == 2:  # BLOCK: this tile's scale block is kb
                kb = (k * BLOCK_K) // 128
                sa = tl.load(sa_ptr + rows * stride_sam + kb * stride_sak, mask=m_in, other=0.0)
                sb = tl.load(sb_ptr + kb * stride_sbk + (cols // 128) * stride_sbn, mask=n_in,
                             other=0.0)
                part = part * sa[:, None] * sb[None, :]
            acc += part
        else:
            acc = _dot(a, b, acc, OPERANDS, MANT, BIAS, SPECIALS)  # (BLOCK_M, BLOCK_N)
        a_ptrs += a_step
        b_ptrs += b_step

    # -- epilogue: scales, bias, one rounding ----------------------------------------------
    mask = m_in[:, None] & n_in[None, :]
    out_ptrs = out_ptr + off_m.to(tl.int64) * stride_om + rm[:, None] * stride_om \
        + cols[None, :] * stride_on
    if out_ptr.dtype.element_ty == tl.int32:  # torch._int_mm: no scales, no bias
        tl.store(out_ptrs, acc, mask=mask)
    else:
        acc = acc.to(tl.float32)
        if RECIPE == 0:  # TENSOR
            acc = acc * tl.load(sa_ptr) * tl.load(sb_ptr)
        elif RECIPE == 1:  # ROW
            sa = tl.load(sa_ptr + rows * stride_sam, mask=m_in, other=0.0)
            sb = tl.load(sb_ptr + cols * stride_sbn, mask=n_in, other=0.0)
            acc = acc * sa[:, None] * sb[None, :]
        if HAS_BIAS:
            c = tl.load(bias_ptr + cols * stride_c, mask=n_in, other=0)
            if bias_ptr.dtype.element_ty == tl.int16:  # bfloat16 bits (interpreter)
                c = _bf16_bits_to_f32(c)
            acc += c.to(tl.float32)[None, :]
        if out_ptr.dtype.element_ty == tl.int16:
            # bfloat16 bits (interpreter): round to nearest even by adding 0x7fff plus
            # the lowest kept bit; a carry rolls into the exponent (to inf past the
            # largest). NaN is set apart: its payload could carry into the sign.
            bits = acc.to(tl.uint32, bitcast=True)
            bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
            bits = tl.where(acc != acc, 0x7FC0, bits)
            tl.store(out_ptrs, bits.to(tl.uint16).to(tl.int16, bitcast=True), mask=mask)
        else:
            tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=mask)


# ---------------------------------------------------------------------------------------
# Launcher
# ---------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def native_fp8(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether Triton's ``tl.dot`` takes ``dtype`` as is on this device (never under
    the interpreter, whose fp8 dot gets NaN and inf wrong)."""
    if interpreting() or device.type != "cuda":
        return False
    if gpu_platform() == "hip":
        arch = torch.cuda.get_device_properties(device).gcnArchName.split(":")[0]
        # MI300's matrix cores take the FNUZ encodings, MI350's the OCP ones.
        return (arch == "gfx942" and dtype not in _OCP) or (arch == "gfx950" and dtype in _OCP)
    return dtype in _OCP and torch.cuda.get_device_capability(device) >= (8, 9)


def _operands(a, native: bool | None) -> tuple[int, torch.Tensor]:
    if a.dtype is torch.int8:
        return INT8, a
    use = native_fp8(a.dtype, a.device) if native is None else native
    return (NATIVE_FP8, a) if use else (FP8_BITS, a.view(torch.uint8))


def _bf16_bits(t):
    """Under the interpreter, bfloat16 travels as int16 bits (see the module docstring)."""
    return t.view(torch.int16) if t is not None and t.dtype is torch.bfloat16 \
        and interpreting() else t


def scaled_gemm(a, b, scale_a, scale_b, out, recipe: str = "tensor", bias=None, *,
                native: bool | None = None, config: Tile | None = None) -> None:
    """Write ``(a · scale_a) @ (b · scale_b) + bias`` into ``out`` (the fields of
    :class:`~hetero.ops.scaled_gemm.ScaledGemmArgs`, already checked by the op).
    ``native``: fp8 operands straight into ``tl.dot`` (True) or decoded from their bits
    (False); ``None`` picks per device. ``config``: run this :class:`Tile` untuned."""
    (M, K), N = a.shape, b.shape[1]
    if out.numel() == 0:
        return
    if K == 0:  # empty sums: zeros, plus the bias
        if bias is None:
            out.zero_()
        else:
            out.copy_(bias.expand(M, N))
        return
    operands, a_ = _operands(a, native)
    b_ = b if operands != FP8_BITS else b.view(torch.uint8)
    mant, fbias, specials = _FORMATS.get(a.dtype, (0, 0, 0))
    code = _RECIPES[recipe]
    col_major = [int(t.stride(0) == 1 and t.stride(1) != 1) for t in (a, b)]
    extents = [(t.shape[0] - 1) * abs(t.stride(0)) + (t.shape[1] - 1) * abs(t.stride(1))
               for t in (a, b, out)]
    strides = [abs(s) for t in (a, b, out) for s in t.stride()]
    meta = {"RECIPE": code, "OPERANDS": operands, "MANT": mant, "BIAS": fbias,
            "SPECIALS": specials, "HAS_BIAS": bias is not None,
            "PER_TILE": code == BLOCK or (operands == INT8 and K > _INT_EXACT_K
                                          and out.dtype is not torch.int32),
            "INDEX_64": max(extents) + 256 * max(strides) >= 2**31}  # 256: the largest tile
    args = (a_, b_, scale_a, scale_b, _bf16_bits(bias) if bias is not None else out,
            _bf16_bits(out), M, N, K, *a.stride(), *b.stride(), *scale_a.stride(),
            *scale_b.stride(), bias.stride(0) if bias is not None else 0, *out.stride(),
            next_pow2(M), next_pow2(N), next_pow2(K), 2 * col_major[0] + col_major[1])

    def grid(meta):
        return (triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"]),)

    key = (a.shape, a.stride(), b.stride(), a.dtype, out.dtype, out.stride(), recipe,
           bias is not None, native, a.device)
    config = config or _PICKED.get(key)
    picked = run(_scaled_gemm_kernel, grid, args, meta, TUNING, config=config,
                 tune=M * N * K > AUTOTUNE_MIN_WORK)
    if picked is not None and not interpreting():  # next time, straight to it
        if len(_PICKED) >= 4096:
            _PICKED.clear()
        _PICKED[key] = picked


_PICKED: dict[tuple, Tile] = {}  # the config picked per call signature
