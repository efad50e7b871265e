"""GEMM in Triton: ``out = alpha * (a @ b) + beta * bias``, accumulated in float32.

Shapes follow hetero's kernel convention (:class:`hetero.kernel.Kernel`):
``a (*batch, M, K)``, ``b (*batch, K, N)``, ``bias`` ``None`` or expanded to ``out``'s
shape, ``out (*batch, M, N)``; batch dims already broadcast (strides may be 0). Every
operand is read and written through its own strides: transposed and sliced views are
never copied.

Algorithm (as in Triton's matmul tutorials 03 and 09): the output is cut into
``(BLOCK_M, BLOCK_N)`` tiles, numbered batch element by batch element and, within one,
in *grouped* order (``GROUP_M`` tile-rows walk across N together, so the panels of ``a``
and ``b`` that tiles computed at the same time read are still in L2 when the next one
needs them). A tile marches along K in ``BLOCK_K`` steps, accumulating ``tl.dot``
products in float32, then applies ``alpha``, ``beta * bias`` and one rounding to
``out``'s dtype. Each program computes one tile, or — persistent configs — one program
per SM loops over tiles, overlapping one tile's epilogue with the next one's loads.

Operand tiles come in one of two ways, chosen per tuning config:

* pointer loads (any strides; Ampere-style ``cp.async`` pipelining on NVIDIA), masked
  only on the edges that need it (``MASK_M/N/K``);
* TMA tensor descriptors (NVIDIA sm90+, 16-bit inputs, a unit stride and 16-byte
  aligned rows): the copy engine fetches whole tiles, zero-fills past the edges, and
  frees the warps' registers and issue slots for the ``wgmma`` pipeline.

Inputs: float16, bfloat16 (tensor cores, exact products, fp32 sums) and float32, whose
products are exact (``input_precision="ieee"``) unless the caller passes
``allow_tf32=True`` (the Triton backend passes ``torch.backends.cuda.matmul.allow_tf32``,
the switch PyTorch's own matmul obeys). The result is cast to ``out``'s dtype: the
inputs' or float32.

Config selection: on a GPU, ``triton.autotune`` over :data:`CUDA_CONFIGS` or
:data:`HIP_CONFIGS`, pruned per problem by :func:`configs_for` and keyed on bucketed
``(M, N, K, batch)``, the operand layouts and the dtypes; problems too small to repay
tuning take the first config that fits. A config that fails to build is skipped, never
fatal. Each distinct call signature (shapes, strides, dtypes, alignment) is planned once
and then goes straight to the chosen config. Under ``TRITON_INTERPRET=1`` (CPU, slow)
one small config runs and bfloat16 is refused: the interpreter's ``tl.dot`` multiplies
raw bfloat16 bits.

Batch dims: merged into one launch dim where every operand's strides allow (as a view
would), else looped over in Python; ``x @ w`` with one ``w`` for the whole batch folds
the batch into M.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import warnings
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from . import interpreting


# ---------------------------------------------------------------------------------------
# Tuning configs, as data
# ---------------------------------------------------------------------------------------

class TileConfig(NamedTuple):
    """One point of the tuning space. ``tma``: load operand tiles through TMA tensor
    descriptors (sm90+ only). ``persistent``: one program per SM looping over tiles
    (else one program per tile). ``options``: extra backend compile options as
    ``(name, value)`` pairs (AMD: ``waves_per_eu``, ``matrix_instr_nonkdim``)."""

    block_m: int
    block_n: int
    block_k: int
    group_m: int
    num_warps: int
    num_stages: int
    tma: bool = False
    persistent: bool = False
    options: tuple = ()

    def meta(self) -> dict:
        """The kernel's tuned meta-parameters (constexprs)."""
        return {"BLOCK_M": self.block_m, "BLOCK_N": self.block_n, "BLOCK_K": self.block_k,
                "GROUP_M": self.group_m, "USE_TMA": self.tma, "PERSISTENT": self.persistent}

    def launch_options(self) -> dict:
        return {"num_warps": self.num_warps, "num_stages": self.num_stages,
                **dict(self.options)}

    def to_triton(self) -> triton.Config:
        return triton.Config({**self.meta(), **dict(self.options)},
                             num_warps=self.num_warps, num_stages=self.num_stages)


_T = TileConfig
_HIP = (("matrix_instr_nonkdim", 16),)  # 16x16 MFMA: the usual best on CDNA2/3

#: NVIDIA configs (Hopper first, valid on Ampere). Order matters only where no tuning
#: happens (small problems): the first config that passes :func:`configs_for` runs.
#: ``_T(BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M, num_warps, num_stages, tma, persistent)``.
CUDA_CONFIGS: list[TileConfig] = [
    # Small M (decode-like, M <= 32): memory-bound on b. Narrow N tiles give >= 1 program
    # per SM; a deep K step keeps enough bytes in flight to stream b at full bandwidth.
    _T(16, 32, 256, 8, 4, 4),
    _T(16, 64, 128, 8, 4, 5),
    _T(16, 64, 256, 8, 4, 4),
    _T(16, 128, 128, 8, 4, 4),
    _T(16, 64, 128, 8, 4, 5, tma=True),
    _T(32, 64, 128, 8, 4, 4),
    _T(32, 128, 128, 8, 4, 4, tma=True),
    # Medium M (64..512): enough tiles to fill ~132 SMs before tiles get large.
    _T(64, 64, 128, 8, 4, 4),
    _T(128, 32, 128, 8, 4, 4),
    _T(64, 128, 64, 8, 4, 4),
    _T(64, 128, 64, 8, 4, 4, tma=True),
    _T(128, 64, 64, 8, 4, 4, tma=True),
    # Large tiles: compute-bound problems. 128x256x64 with 8 warps (two warpgroups, each
    # a wgmma m64n256 per K step) is the classic Hopper shape; 128x128 at 3 stages
    # (96 KiB) fits two programs per SM, which hides one's prologue and epilogue under
    # the other's main loop. Persistent variants overlap them within one program.
    _T(128, 256, 64, 8, 8, 3, tma=True),
    _T(128, 256, 64, 8, 8, 4, tma=True),
    _T(256, 128, 64, 8, 8, 3, tma=True),
    _T(128, 128, 64, 8, 8, 3, tma=True),
    _T(128, 128, 64, 8, 8, 4, tma=True),
    _T(128, 128, 128, 8, 8, 3, tma=True),
    _T(64, 256, 64, 8, 4, 4, tma=True),
    _T(128, 256, 64, 8, 8, 3, tma=True, persistent=True),
    _T(128, 256, 64, 8, 8, 4, tma=True, persistent=True),
    _T(128, 128, 64, 8, 8, 4, tma=True, persistent=True),
    # Pointer variants of the large tiles: Ampere, and layouts TMA cannot describe.
    _T(128, 256, 64, 8, 8, 3),
    _T(256, 128, 64, 8, 8, 3),
    _T(128, 128, 64, 8, 4, 4),
    _T(64, 256, 32, 8, 4, 4),
    _T(128, 64, 32, 8, 4, 4),
    _T(128, 256, 32, 8, 8, 3),  # these two also fit fp32 (tf32) tiles in shared memory
    _T(128, 128, 32, 8, 4, 4),
    # Exact fp32 (FMA, no tensor cores) and small fallbacks: short K steps.
    _T(64, 64, 32, 8, 4, 3),
    _T(32, 64, 32, 8, 4, 3),
    _T(16, 64, 32, 8, 4, 3),
]

#: AMD (ROCm) configs: the stream pipeliner wants num_stages=2, and CDNA's 64 KiB of LDS
#: per CU favours larger BLOCK_K over deeper pipelines. ``matrix_instr_nonkdim`` and
#: ``waves_per_eu`` are compile options of Triton's AMD backend (HIPOptions).
HIP_CONFIGS: list[TileConfig] = [
    _T(16, 64, 256, 8, 4, 2, options=_HIP + (("waves_per_eu", 2),)),
    _T(16, 128, 128, 8, 4, 2, options=_HIP + (("waves_per_eu", 2),)),
    _T(32, 64, 256, 8, 4, 2, options=_HIP + (("waves_per_eu", 2),)),
    _T(64, 64, 128, 8, 4, 2, options=_HIP + (("waves_per_eu", 2),)),
    _T(64, 128, 128, 8, 4, 2, options=_HIP + (("waves_per_eu", 2),)),
    _T(128, 128, 64, 8, 4, 2, options=_HIP + (("waves_per_eu", 2),)),
    _T(128, 128, 128, 8, 8, 2, options=_HIP + (("waves_per_eu", 1),)),
    _T(256, 128, 64, 8, 8, 2, options=_HIP + (("waves_per_eu", 1),)),
    _T(128, 256, 64, 8, 8, 2, options=_HIP + (("waves_per_eu", 1),)),
    _T(256, 256, 64, 4, 8, 2, options=_HIP + (("waves_per_eu", 1),)),
    _T(64, 64, 32, 8, 4, 2),
    _T(32, 64, 32, 8, 4, 2),
]

#: Under the interpreter: no tuning (each program is simulated in numpy), one small tile.
INTERPRETER_CONFIG = _T(32, 32, 32, 4, 4, 1)
#: The config a failed tuning run falls back to: pointer loads, modest resources.
SAFE_CONFIG = _T(64, 64, 32, 8, 4, 3)
#: Problems with at most this many multiply-adds (batch * M * N * K) skip tuning.
AUTOTUNE_MIN_WORK = 1 << 24


def _next_pow2(x: int) -> int:
    return 1 << max(0, int(x) - 1).bit_length()


@functools.lru_cache(maxsize=4096)  # consulted on every untuned (small) call
def configs_for(m: int, n: int, k: int, dtype: torch.dtype, *, platform: str = "cuda",
                tma: bool = False, exact_fp32: bool = True, max_shared_mem: int | None = None,
                num_sms: int | None = None, batch: int = 1) -> tuple[TileConfig, ...]:
    """The configs worth trying for one problem, in list order; never empty.

    Drops configs whose tile is far larger than the problem (``BLOCK_M`` beyond M's
    next power of two, and so on), small tiles on large problems, tilings that would
    leave most SMs idle, configs that do not fit in shared memory, TMA configs where
    TMA is unavailable (``tma=False``), persistent ones with no more tiles than SMs,
    and for exact fp32 (FMA, no tensor cores) long K steps and big tiles. If nothing
    survives, the smallest config that fits remains.
    """
    table = HIP_CONFIGS if platform == "hip" else CUDA_CONFIGS
    elem = torch.empty((), dtype=dtype).element_size()
    m_cap, n_cap, k_cap = (max(16, _next_pow2(x)) for x in (m, n, k))

    def smem(c):
        # Pipelined operand buffers; AMD's stream pipeliner keeps num_stages - 1 in LDS.
        stages = max(1, c.num_stages - 1) if platform == "hip" else c.num_stages
        return stages * (c.block_m + c.block_n) * c.block_k * elem

    fitting = [c for c in table
               if (tma or not c.tma)
               and (max_shared_mem is None or smem(c) <= max_shared_mem)
               and not (dtype is torch.float32 and exact_fp32
                        and (c.block_k > 32 or c.block_m * c.block_n > 128 * 64 or c.tma))]
    if not fitting:  # only when shared memory is tiny: take the smallest tile
        return (min(table, key=lambda c: (c.tma, smem(c))),)

    def tiles(c):
        return batch * -(-m // c.block_m) * -(-n // c.block_n)

    chosen = [c for c in fitting
              if c.block_m <= m_cap and c.block_n <= n_cap and c.block_k <= k_cap
              # Small tiles on large problems re-read the operands many times over, and
              # short K steps on small tiles (the fp32 fallbacks) starve tensor cores.
              and c.block_m >= min(64, m // 8)
              and not (m >= 256 and c.block_n < min(64, n // 8))
              and not (elem == 2 and k >= 512 and c.block_k < 64
                       and c.block_m * c.block_n <= 64 * 64)]
    if num_sms and chosen:
        # Keep tilings that occupy at least a quarter of what the best one occupies;
        # persistence only matters with more tiles than SMs.
        best = min(num_sms, max(tiles(c) for c in chosen))
        chosen = [c for c in chosen if 4 * tiles(c) >= best
                  and not (c.persistent and tiles(c) <= num_sms)]
    return tuple(chosen) or (min(fitting, key=lambda c: (c.block_m * c.block_n * c.block_k,
                                                          c.tma)),)


# ---------------------------------------------------------------------------------------
# The kernel
# ---------------------------------------------------------------------------------------

@triton.jit
def _load(ptrs, rows_ok, cols_ok, CHECK_ROWS: tl.constexpr, CHECK_COLS: tl.constexpr):
    """A tile load masked only on the edges that can be ragged: an unmasked load of a
    contiguous dim vectorises into 16-byte accesses; masked-off elements read 0, which
    adds nothing to the dot product."""
    if CHECK_ROWS and CHECK_COLS:
        x = tl.load(ptrs, mask=rows_ok & cols_ok, other=0.0)
    elif CHECK_ROWS:
        x = tl.load(ptrs, mask=rows_ok, other=0.0)
    elif CHECK_COLS:
        x = tl.load(ptrs, mask=cols_ok, other=0.0)
    else:
        x = tl.load(ptrs)
    return x


@triton.jit
def _tile_coords(tile, num_pid_m, num_pid_n, GROUP_M: tl.constexpr):
    """``(pid_m, pid_n)`` of tile number ``tile``, in grouped order: tile numbers run
    down ``GROUP_M`` tile-rows before moving one tile-column right, so tiles computed
    at the same time share the same few row-panels of a and column-panels of b, which
    then stay in L2 instead of being streamed from memory once per tile."""
    num_pid_in_group = GROUP_M * num_pid_n
    first_pid_m = (tile // num_pid_in_group) * GROUP_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + (tile % num_pid_in_group) % group_size_m
    pid_n = (tile % num_pid_in_group) // group_size_m
    return pid_m, pid_n


@triton.jit
def _gemm_tile(
    tile, a_ptr, b_ptr, bias_ptr, out_ptr, a_desc, b_desc,
    M, N, K, num_pid_m, num_pid_n,
    stride_ab, stride_am, stride_ak, stride_bb, stride_bk, stride_bn,
    stride_cb, stride_cm, stride_cn, stride_ob, stride_om, stride_on,
    alpha, beta,
    HAS_BIAS: tl.constexpr, DOT_PRECISION: tl.constexpr, INDEX_64: tl.constexpr,
    A_K_MAJOR: tl.constexpr, B_K_MAJOR: tl.constexpr,
    MASK_M: tl.constexpr, MASK_N: tl.constexpr, MASK_K: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr, USE_TMA: tl.constexpr,
):
    """Compute and store output tile number ``tile`` (batch-major, then grouped)."""
    tiles_per_batch = num_pid_m * num_pid_n
    batch = tile // tiles_per_batch
    pid_m, pid_n = _tile_coords(tile % tiles_per_batch, num_pid_m, num_pid_n, GROUP_M)
    off_m = pid_m * BLOCK_M
    off_n = pid_n * BLOCK_N
    # The tile's corner offsets in 64 bits (batch * stride, or row * stride in a matrix
    # of over 2**31 elements, overflow int32); offsets inside the tile stay 32-bit
    # (cheaper tensors) unless one stride is huge (INDEX_64).
    batch64 = batch.to(tl.int64)
    m64 = off_m.to(tl.int64)
    n64 = off_n.to(tl.int64)
    rm = tl.arange(0, BLOCK_M)  # (BLOCK_M,)
    rn = tl.arange(0, BLOCK_N)  # (BLOCK_N,)
    rk = tl.arange(0, BLOCK_K)  # (BLOCK_K,)
    if INDEX_64:
        rm = rm.to(tl.int64)
        rn = rn.to(tl.int64)
        rk = rk.to(tl.int64)

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if USE_TMA:
        for k in range(0, tl.cdiv(K, BLOCK_K)):
            off_k = k * BLOCK_K
            # The transposes are free: wgmma reads a 16-bit tile from shared memory in
            # either majorness.
            if A_K_MAJOR:
                a = a_desc.load([batch, off_m, off_k]).reshape(BLOCK_M, BLOCK_K)
            else:
                a = a_desc.load([batch, off_k, off_m]).reshape(BLOCK_K, BLOCK_M).T
            if B_K_MAJOR:
                b = b_desc.load([batch, off_n, off_k]).reshape(BLOCK_N, BLOCK_K).T
            else:
                b = b_desc.load([batch, off_k, off_n]).reshape(BLOCK_K, BLOCK_N)
            acc = tl.dot(a, b, acc, input_precision=DOT_PRECISION)  # (BLOCK_M, BLOCK_N)
    else:
        a_ptrs = a_ptr + (batch64 * stride_ab + m64 * stride_am) \
            + rm[:, None] * stride_am + rk[None, :] * stride_ak  # (BLOCK_M, BLOCK_K)
        b_ptrs = b_ptr + (batch64 * stride_bb + n64 * stride_bn) \
            + rk[:, None] * stride_bk + rn[None, :] * stride_bn  # (BLOCK_K, BLOCK_N)
        # The pointer step per K tile, in the offsets' integer width.
        if INDEX_64:
            a_step = tl.cast(BLOCK_K, tl.int64) * stride_ak
            b_step = tl.cast(BLOCK_K, tl.int64) * stride_bk
        else:
            a_step = BLOCK_K * stride_ak
            b_step = BLOCK_K * stride_bk
        m_ok = (off_m + rm)[:, None] < M  # (BLOCK_M, 1)
        n_ok = (off_n + rn)[None, :] < N  # (1, BLOCK_N)
        for k in range(0, tl.cdiv(K, BLOCK_K)):
            k_left = K - k * BLOCK_K
            a = _load(a_ptrs, m_ok, rk[None, :] < k_left, MASK_M, MASK_K)
            b = _load(b_ptrs, rk[:, None] < k_left, n_ok, MASK_K, MASK_N)
            acc = tl.dot(a, b, acc, input_precision=DOT_PRECISION)  # (BLOCK_M, BLOCK_N)
            a_ptrs += a_step
            b_ptrs += b_step

    # -- epilogue: alpha * acc + beta * bias in fp32, one rounding to out's type --------
    acc = acc * alpha
    mask = ((off_m + rm)[:, None] < M) & ((off_n + rn)[None, :] < N)  # (BLOCK_M, BLOCK_N)
    if HAS_BIAS:
        bias_ptrs = bias_ptr + (batch64 * stride_cb + m64 * stride_cm + n64 * stride_cn) \
            + rm[:, None] * stride_cm + rn[None, :] * stride_cn
        acc += beta * tl.load(bias_ptrs, mask=mask, other=0.0).to(tl.float32)
    out_ptrs = out_ptr + (batch64 * stride_ob + m64 * stride_om + n64 * stride_on) \
        + rm[:, None] * stride_om + rn[None, :] * stride_on
    tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=mask)


@triton.heuristics({
    # Ragged edges, known at launch: whole-tile problems compile without masks.
    "MASK_M": lambda args: args["M"] % args["BLOCK_M"] != 0,
    "MASK_N": lambda args: args["N"] % args["BLOCK_N"] != 0,
    "MASK_K": lambda args: args["K"] % args["BLOCK_K"] != 0,
})
@triton.jit(do_not_specialize=["M_KEY", "N_KEY", "K_KEY", "B_KEY", "LAYOUT_KEY"])
def _gemm_kernel(
    a_ptr, b_ptr, bias_ptr, out_ptr,
    BATCH, M, N, K,
    stride_ab, stride_am, stride_ak,  # a (BATCH, M, K)
    stride_bb, stride_bk, stride_bn,  # b (BATCH, K, N)
    stride_cb, stride_cm, stride_cn,  # bias (BATCH, M, N); unused without HAS_BIAS
    stride_ob, stride_om, stride_on,  # out (BATCH, M, N)
    alpha, beta,  # float32 scalars
    # Autotuning keys only (bucketed sizes, operand layouts); the kernel never reads them.
    M_KEY, N_KEY, K_KEY, B_KEY, LAYOUT_KEY,
    HAS_BIAS: tl.constexpr,
    DOT_PRECISION: tl.constexpr,  # None (16-bit inputs), "ieee" or "tf32" (fp32 inputs)
    INDEX_64: tl.constexpr,  # some in-tile offset may not fit in int32
    A_K_MAJOR: tl.constexpr, B_K_MAJOR: tl.constexpr,  # TMA only: stride_ak / stride_bk == 1
    MASK_M: tl.constexpr, MASK_N: tl.constexpr, MASK_K: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr, USE_TMA: tl.constexpr, PERSISTENT: tl.constexpr,
):
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)

    a_desc = None
    b_desc = None
    if USE_TMA:
        # Descriptors over the whole (BATCH, rows, cols) operands, contiguous dim last,
        # made once per program. Reads past M, N or K are zero-filled by the hardware,
        # so the main loop has no masks at all.
        if A_K_MAJOR:
            a_desc = tl.make_tensor_descriptor(a_ptr, shape=[BATCH, M, K],
                                               strides=[stride_ab, stride_am, 1],
                                               block_shape=[1, BLOCK_M, BLOCK_K])
        else:
            a_desc = tl.make_tensor_descriptor(a_ptr, shape=[BATCH, K, M],
                                               strides=[stride_ab, stride_ak, 1],
                                               block_shape=[1, BLOCK_K, BLOCK_M])
        if B_K_MAJOR:  # x @ w.t(): w is (N, K) row-major
            b_desc = tl.make_tensor_descriptor(b_ptr, shape=[BATCH, N, K],
                                               strides=[stride_bb, stride_bn, 1],
                                               block_shape=[1, BLOCK_N, BLOCK_K])
        else:
            b_desc = tl.make_tensor_descriptor(b_ptr, shape=[BATCH, K, N],
                                               strides=[stride_bb, stride_bk, 1],
                                               block_shape=[1, BLOCK_K, BLOCK_N])

    if PERSISTENT:
        # One program per SM walks tiles pid, pid + #programs, ...; flattening the tile
        # and K loops into one lets the pipeliner issue the next tile's first loads
        # under this tile's epilogue.
        for tile in tl.range(tl.program_id(0), BATCH * num_pid_m * num_pid_n,
                             tl.num_programs(0), flatten=True):
            _gemm_tile(tile, a_ptr, b_ptr, bias_ptr, out_ptr, a_desc, b_desc,
                       M, N, K, num_pid_m, num_pid_n,
                       stride_ab, stride_am, stride_ak, stride_bb, stride_bk, stride_bn,
                       stride_cb, stride_cm, stride_cn, stride_ob, stride_om, stride_on,
                       alpha, beta, HAS_BIAS, DOT_PRECISION, INDEX_64, A_K_MAJOR, B_K_MAJOR,
                       MASK_M, MASK_N, MASK_K, BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M, USE_TMA)
    else:  # one program per tile (no loop around it: even a one-trip loop costs registers)
        _gemm_tile(tl.program_id(0), a_ptr, b_ptr, bias_ptr, out_ptr, a_desc, b_desc,
                   M, N, K, num_pid_m, num_pid_n,
                   stride_ab, stride_am, stride_ak, stride_bb, stride_bk, stride_bn,
                   stride_cb, stride_cm, stride_cn, stride_ob, stride_om, stride_on,
                   alpha, beta, HAS_BIAS, DOT_PRECISION, INDEX_64, A_K_MAJOR, B_K_MAJOR,
                   MASK_M, MASK_N, MASK_K, BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M, USE_TMA)


# ---------------------------------------------------------------------------------------
# Launcher
# ---------------------------------------------------------------------------------------

_INT32_LIMIT = 2**31  # in-tile offsets at or beyond this switch the kernel to int64
_LOW_PRECISION = (torch.float16, torch.bfloat16)
_KEYS = ["M_KEY", "N_KEY", "K_KEY", "B_KEY", "LAYOUT_KEY", "HAS_BIAS", "DOT_PRECISION"]
_INTERPRETER_PROGRAMS = 3  # persistent programs under the interpreter (tests)


def gemm(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None, alpha: float,
         beta: float, out: torch.Tensor, *, allow_tf32: bool = False,
         tma: bool | None = None, config: TileConfig | None = None) -> None:
    """Write ``alpha * (a @ b) + beta * bias`` into ``out`` (hetero's kernel convention).

    ``a (*batch, M, K)``, ``b (*batch, K, N)``: float16, bfloat16 or float32, batch
    dims broadcast (strides may be 0). ``bias``: ``None`` or expanded to ``out``'s
    shape, ignored when ``beta == 0``. ``out (*batch, M, N)``: ``a``'s dtype or float32,
    any strides. ``allow_tf32``: float32 products in TF32 (else exact).
    ``tma``: ``None`` lets tuning choose between TMA and pointer loads, ``False``
    forbids TMA, ``True`` requires it (``ValueError`` where it cannot serve).
    ``config``: run this :class:`TileConfig` instead of tuning (tests, benchmarks).
    """
    if a.dtype is torch.bfloat16 and interpreting():
        raise TypeError("a: bfloat16 is not supported under TRITON_INTERPRET=1 (the "
                        "interpreter's tl.dot multiplies the raw bfloat16 bits); use "
                        "float16 or float32, or a GPU")
    if a.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise TypeError(f"a: expected float16, bfloat16 or float32, got {a.dtype}")
    if out.numel() == 0:
        return
    if bias is not None and beta == 0:
        bias = None  # beta * NaN would still be NaN: a zero beta means "no bias"
    if a.shape[-1] == 0:  # nothing to multiply: out = beta * bias, or zeros
        if bias is None:
            out.zero_()
        else:
            out.copy_(bias.to(torch.float32) * beta)
        return

    # The launch depends on shapes, strides, dtypes and pointer alignment only: work it
    # out once per such signature (this Python is most of the cost of a small GEMM).
    key = (a.shape, a.stride(), b.shape, b.stride(), out.shape, out.stride(), a.dtype,
           out.dtype, a.device, a.data_ptr() % 16, b.data_ptr() % 16,
           None if bias is None else (bias.stride(), bias.dtype), allow_tf32, tma, config)
    launch = _LAUNCHES.get(key)
    if launch is None:
        launch = _plan(a, b, bias, out, allow_tf32, tma, config)
        if len(_LAUNCHES) >= 4096:
            _LAUNCHES.clear()
        _LAUNCHES[key] = launch
    if launch is not None:  # one launch on the operands as given (views share pointers)
        tuned = _run(launch, a, b, bias, out, float(alpha), float(beta))
        if tuned is not None:  # next time, straight to the config tuning chose
            _LAUNCHES[key] = launch._replace(config=tuned)
        return

    # Batch dims that cannot merge into one: a launch per element of the leading ones.
    operands = [a, b, out] + ([bias] if bias is not None else [])
    dims = _batch_dims(out.shape[:-2], operands)
    views = [_batched_view(t, dims, i) for i, t in enumerate(operands)]
    for index in itertools.product(*(range(size) for size, _ in dims[:-1])):
        a3, b3, o3, *c3 = (v[index] for v in views)
        c3 = c3[0] if c3 else None
        a3, b3, c3, o3 = _fold_batch_into_m(a3, b3, c3, o3) or (a3, b3, c3, o3)
        _run(_make_launch(a3, b3, c3, o3, allow_tf32, tma, config), a3, b3, c3, o3,
             float(alpha), float(beta))


# -- Planning a launch: once per (shapes, strides, dtypes, alignment) ---------------------

class _Launch(NamedTuple):
    """Everything about one kernel launch except the operand pointers and alpha/beta."""

    args: tuple  # BATCH, M, N, K, the 12 strides
    keys: tuple  # M_KEY, N_KEY, K_KEY, B_KEY, LAYOUT_KEY
    meta: dict  # constexprs that are not tuned
    grid: object  # META -> grid
    config: TileConfig | None  # a fixed config, or None: autotune
    tma: bool  # TMA configs may run (needs the descriptor allocator)
    platform: str


_LAUNCHES: dict[tuple, _Launch | None] = {}


def _plan(a, b, bias, out, allow_tf32, tma, config) -> _Launch | None:
    """The single launch that computes the whole call, or None when the batch dims do
    not merge into one (the caller then loops)."""
    operands = [a, b, out] + ([bias] if bias is not None else [])
    dims = _batch_dims(out.shape[:-2], operands)
    if len(dims) > 1:
        return None
    a3, b3, o3, *c3 = (_batched_view(t, dims, i) for i, t in enumerate(operands))
    c3 = c3[0] if c3 else None
    a3, b3, c3, o3 = _fold_batch_into_m(a3, b3, c3, o3) or (a3, b3, c3, o3)
    return _make_launch(a3, b3, c3, o3, allow_tf32, tma, config)


def _make_launch(a, b, bias, out, allow_tf32, tma, config) -> _Launch:
    """Plan one launch over 3-D views ``a (B, M, K)``, ``b (B, K, N)``, ``out`` (and
    ``bias``) ``(B, M, N)``."""
    batch, M, K = a.shape
    N = b.shape[2]
    interp = interpreting()
    platform = "interpreter" if interp else _platform()
    if a.dtype in _LOW_PRECISION:
        precision = None
    elif allow_tf32 and (platform == "cuda" or _hip_has_tf32(a.device)):
        precision = "tf32"
    else:
        precision = "ieee"

    # TMA: 16-bit inputs (tf32 wgmma takes K-major operands only), layouts a descriptor
    # can describe, and a GPU that has it (the interpreter emulates it, for the tests).
    a_tma, b_tma = _tma_view(a, 2), _tma_view(b, 1)
    tma_ok = (a.dtype in _LOW_PRECISION and a_tma is not None and b_tma is not None
              and (interp or _device_limits(a.device.index)[2]))
    if (tma or (config is not None and config.tma)) and not tma_ok:
        raise ValueError("tma: TMA cannot load these operands (it needs a CUDA sm90+ GPU, "
                         "float16/bfloat16, a unit stride and 16-byte aligned rows)")
    tma_mode = 0 if (tma is False or not tma_ok) else (2 if tma else 1)
    sa, sb = list(a.stride()), list(b.stride())
    if tma_ok:
        sa[0], sb[0] = a_tma[1], b_tma[1]

    def layout_code(t, k_dim):
        s = t.stride()
        return 0 if s[k_dim] == 1 else (1 if s[3 - k_dim] == 1 else 2)

    meta = {"HAS_BIAS": bias is not None, "DOT_PRECISION": precision,
            "INDEX_64": max(map(_max_offset, (a, b, bias, out))) >= _INT32_LIMIT,
            "A_K_MAJOR": bool(tma_ok and a_tma[0]), "B_K_MAJOR": bool(tma_ok and b_tma[0])}
    num_sms = _INTERPRETER_PROGRAMS if interp else _device_limits(a.device.index)[1]

    def grid(META):
        tiles = batch * -(-M // META["BLOCK_M"]) * -(-N // META["BLOCK_N"])
        return (min(tiles, num_sms) if META["PERSISTENT"] else tiles,)

    if interp:
        config = config or INTERPRETER_CONFIG._replace(tma=tma_mode == 2)
    elif config is None and batch * M * N * K <= AUTOTUNE_MIN_WORK:
        smem, sms, _ = _device_limits(a.device.index)
        candidates = configs_for(M, N, K, a.dtype, platform=platform, tma=tma_mode > 0,
                                 exact_fp32=precision == "ieee", max_shared_mem=smem,
                                 num_sms=sms, batch=batch)
        # Not worth tuning: the first fitting config, pointer loads unless TMA is
        # required (no descriptor set-up to amortise).
        config = next((c for c in candidates if c.tma == (tma_mode == 2)), None) \
            or (_first_tma_config(platform) if tma_mode == 2 else candidates[0])
    return _Launch(
        args=(batch, M, N, K, *sa, *sb,
              *(bias.stride() if bias is not None else (0, 0, 0)), *out.stride()),
        keys=(_bucket(M), _bucket(N), _bucket(K), _bucket(batch),
              layout_code(a, 2) + 4 * layout_code(b, 1) + 16 * tma_mode),
        meta=meta, grid=grid, config=config, tma=tma_mode > 0, platform=platform)


# -- Running it ---------------------------------------------------------------------------

def _run(launch: _Launch, a, b, bias, out, alpha: float, beta: float) -> TileConfig | None:
    """Launch the kernel on the operands' data pointers. Returns the config that
    tuning chose (or fell back to), None if the launch had one already."""
    args = (a, b, out if bias is None else bias, out, *launch.args, alpha, beta,
            *launch.keys)
    config, grid, meta = launch.config, launch.grid, launch.meta
    if launch.platform == "interpreter":
        _interpreter_numpy_fix()
        _gemm_kernel[grid](*args, **meta, **config.meta())
        return None
    index = a.device.index
    with torch.cuda.device(index) if index != torch.cuda.current_device() else _NO_CONTEXT:
        if launch.tma:
            _ensure_tma_allocator()
        if config is not None:
            # The JIT function itself: the MASK_* heuristics and the autotuner's
            # bookkeeping would cost more than the launch.
            _gemm_kernel.fn[grid](*args, **meta, **_masks(launch, config), **config.meta(),
                                  **config.launch_options())
            return None
        tuner = _autotuned(launch.platform)
        try:
            tuner[grid](*args, **meta)
            return _TILE_OF[id(tuner.best_config)]
        except Exception as exc:  # a config that does not build or run: never fatal
            warnings.warn(f"hetero triton gemm: tuning failed ({type(exc).__name__}: "
                          f"{str(exc)[:200]}); running the fallback config {SAFE_CONFIG}",
                          RuntimeWarning, stacklevel=3)
            safe = SAFE_CONFIG
            _gemm_kernel.fn[grid](*args, **meta, **_masks(launch, safe), **safe.meta(),
                                  **safe.launch_options())
            return safe


def _masks(launch: _Launch, config: TileConfig) -> dict:
    """The ``MASK_*`` constexprs (what the kernel's heuristics compute) for a config."""
    _, M, N, K = launch.args[:4]
    return {"MASK_M": M % config.block_m != 0, "MASK_N": N % config.block_n != 0,
            "MASK_K": K % config.block_k != 0}


_NO_CONTEXT = contextlib.nullcontext()


# -- Batch dims ---------------------------------------------------------------------------

def _batch_dims(batch_shape, tensors) -> list[tuple[int, list[int]]]:
    """Batch dims as ``(size, [stride of each tensor])``, size-1 dims dropped and each
    dim merged into the one before it where every tensor's strides allow (as
    ``view`` would); a single dim left means one launch covers the whole batch."""
    dims: list[tuple[int, list[int]]] = []
    for i, size in enumerate(batch_shape):
        if size == 1:
            continue
        strides = [t.stride(i) for t in tensors]
        if dims and all(prev == s * size for prev, s in zip(dims[-1][1], strides)):
            dims[-1] = (dims[-1][0] * size, strides)
        else:
            dims.append((size, strides))
    return dims


def _batched_view(t: torch.Tensor, dims, i: int) -> torch.Tensor:
    """``t``, the ``i``-th tensor given to :func:`_batch_dims`, as
    ``(*merged batch dims, rows, cols)`` (``(1, rows, cols)`` without any), no copy."""
    sizes = [size for size, _ in dims] or [1]
    strides = [st[i] for _, st in dims] or [0]
    return t.as_strided(sizes + list(t.shape[-2:]), strides + list(t.stride()[-2:]),
                        t.storage_offset())


def _fold_batch_into_m(a, b, bias, out):
    """``x @ w`` with ``x (B, M, K)`` and one ``w`` for every batch element (stride 0) is
    one ``(B*M, K) @ (K, N)`` product when the batch strides of ``a``, ``out`` (and
    ``bias``) continue their row strides: bigger tiles, one set of descriptors, and ``w``
    read once per tile-column instead of once per batch element."""
    B, M = a.shape[0], a.shape[1]
    if B == 1 or b.stride(0) != 0:
        return None
    rows = [t for t in (a, out, bias) if t is not None]
    if not all(t.stride(0) == M * t.stride(1) for t in rows):
        return None

    def fold(t):
        return t.as_strided((1, B * M, t.shape[2]), (0, t.stride(1), t.stride(2)),
                            t.storage_offset())

    return fold(a), b[:1], None if bias is None else fold(bias), fold(out)


# -- Operand layouts ----------------------------------------------------------------------

def _tma_view(t: torch.Tensor, k_dim: int) -> tuple[bool, int] | None:
    """How a TMA descriptor can read a ``(B, rows, cols)`` operand whose K dim is
    ``k_dim``: ``(k_major, batch_stride)``, or None where TMA cannot. TMA needs a unit
    stride, a 16-byte aligned base and 16-byte multiples for the other strides; a zero
    (broadcast) batch stride is not relied on. With one batch element any aligned batch
    stride will do, and the one returned is (rows or cols) * pitch."""
    elem = t.element_size()
    if t.data_ptr() % 16:
        return None
    strides = t.stride()
    other = 3 - k_dim  # the matrix dims are 1 and 2
    for k_major, unit, pitch in ((True, k_dim, other), (False, other, k_dim)):
        if strides[unit] == 1 and strides[pitch] > 0 and (strides[pitch] * elem) % 16 == 0:
            if t.shape[0] == 1:
                return k_major, strides[pitch] * t.shape[pitch]
            if strides[0] > 0 and (strides[0] * elem) % 16 == 0:
                return k_major, strides[0]
            return None
    return None


def _max_offset(t: torch.Tensor | None) -> int:
    """A bound on the element offsets the kernel computes in 32 bits: inside one tile
    (at most 256 rows and columns) and one K step."""
    if t is None:
        return 0
    return 256 * (abs(t.stride(1)) + abs(t.stride(2)))


def _bucket(x: int) -> int:
    """Autotuning buckets: powers of two up to 1024, then multiples of 512."""
    return max(16, _next_pow2(x)) if x <= 1024 else -(-x // 512) * 512


# -- Autotuning ---------------------------------------------------------------------------

_TILE_OF: dict[int, TileConfig] = {}  # id(triton.Config) -> the TileConfig it came from


@functools.lru_cache(maxsize=None)
def _autotuned(platform: str):
    """The kernel under triton.autotune with this platform's configs (built lazily)."""
    configs = []
    for tile in HIP_CONFIGS if platform == "hip" else CUDA_CONFIGS:
        configs.append(tile.to_triton())
        _TILE_OF[id(configs[-1])] = tile
    tuner = triton.autotune(configs=configs, key=_KEYS,
                            prune_configs_by={"early_config_prune": _prune})(_gemm_kernel)
    bench = tuner._bench

    def robust_bench(*args, config, **meta):
        # Triton skips configs that run out of resources; one that fails any other way
        # (a compiler error on some tile shape) is skipped too, instead of ending tuning.
        try:
            return bench(*args, config=config, **meta)
        except Exception as exc:
            warnings.warn(f"hetero triton gemm: config {_TILE_OF[id(config)]} failed "
                          f"while tuning ({type(exc).__name__}: {str(exc)[:200]})",
                          RuntimeWarning, stacklevel=2)
            return [float("inf")] * 3

    tuner._bench = robust_bench
    return tuner


def _prune(configs, named_args, **kwargs):
    """``early_config_prune`` for triton.autotune: :func:`configs_for` on the live call."""
    a = named_args["a_ptr"]
    smem, sms, _ = _device_limits(a.device.index)
    tma_mode = named_args["LAYOUT_KEY"] // 16  # 0: pointers only, 1: either, 2: TMA only
    allowed = configs_for(named_args["M"], named_args["N"], named_args["K"], a.dtype,
                          platform=_platform(), tma=tma_mode > 0,
                          exact_fp32=kwargs.get("DOT_PRECISION") == "ieee",
                          max_shared_mem=smem, num_sms=sms, batch=named_args["BATCH"])
    if tma_mode == 2:
        allowed = [c for c in allowed if c.tma] or [_first_tma_config(_platform())]
    allowed = set(allowed)
    return [c for c in configs if _TILE_OF[id(c)] in allowed]


def _first_tma_config(platform: str) -> TileConfig:
    """What ``tma=True`` runs when no TMA config suits the problem's size."""
    return next(c for c in (HIP_CONFIGS if platform == "hip" else CUDA_CONFIGS) if c.tma)


# -- The device ---------------------------------------------------------------------------

def _platform() -> str:
    return "hip" if torch.version.hip is not None else "cuda"


@functools.lru_cache(maxsize=None)
def _device_limits(index: int) -> tuple[int | None, int | None, bool]:
    """(max shared memory per block, SM count, TMA available) of a GPU."""
    smem = sms = None
    try:
        props = triton.runtime.driver.active.utils.get_device_properties(index)
        smem, sms = props.get("max_shared_mem"), props.get("multiprocessor_count")
    except Exception:  # unknown: no shared-memory or occupancy pruning
        pass
    if not sms:
        sms = torch.cuda.get_device_properties(index).multi_processor_count
    tma = _platform() == "cuda" and torch.cuda.get_device_capability(index) >= (9, 0)
    return smem, sms, tma


@functools.lru_cache(maxsize=None)
def _hip_has_tf32(device) -> bool:
    """TF32 dot on AMD: only CDNA3 (gfx942) in Triton 3.x."""
    try:
        return "gfx942" in torch.cuda.get_device_properties(device).gcnArchName
    except Exception:
        return False


def _ensure_tma_allocator() -> None:
    """Device-side TMA descriptors live in a per-launch global scratch buffer that Triton
    gets from the allocator set with ``triton.set_allocator``; set one if nobody has."""
    try:
        from triton.runtime import _allocation

        unset = isinstance(_allocation._allocator.get(), _allocation.NullAllocator)
    except (ImportError, AttributeError):  # another triton layout: assume unset
        unset = True
    if unset:
        triton.set_allocator(_torch_allocator)


def _torch_allocator(size: int, alignment: int, stream):
    return torch.empty(size, dtype=torch.int8, device="cuda")


def _interpreter_numpy_fix() -> None:
    """Backport of triton PR #9172 (issue #9171) for the interpreter of triton <= 3.6
    under numpy >= 2.4, where a scalar is a 1-element array whose ``int()`` now raises,
    so ``range(0, tl.cdiv(K, BLOCK_K))`` fails. Applied once (the attention module
    applies the same patch; whichever runs first wins), only when interpreting."""
    import numpy as np
    from triton.runtime import interpreter as ti

    original = ti._patch_lang_tensor
    if getattr(original, "hetero_fixed", False):
        return
    try:
        int(np.zeros(1, dtype=np.int32))
        return  # this numpy still converts 1-element arrays
    except TypeError:
        pass

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    patched.hetero_fixed = True
    ti._patch_lang_tensor = patched
