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

Config selection (``gemm_configs.py``: the tables; ``gemm_plan.py``: planning a call;
``launch.py``: the launcher every Triton kernel shares): on a GPU, ``triton.autotune``
over ``CUDA_CONFIGS`` or ``HIP_CONFIGS``, pruned per problem by ``configs_for`` and keyed
on bucketed ``(M, N, K, batch)``, the operand layouts and the dtypes; problems too small
to repay tuning take the first config that fits. A config that fails to build is
skipped, never fatal. Each distinct call signature (shapes, strides, dtypes, alignment)
is planned once and then goes straight to the config picked for it. Under
``TRITON_INTERPRET=1`` (CPU, slow) one small config runs and bfloat16 is refused: the
interpreter's ``tl.dot`` multiplies raw bfloat16 bits.

Batch dims: merged into one launch dim where every operand's strides allow (as a view
would), else looped over in Python; ``x @ w`` with one ``w`` for the whole batch folds
the batch into M.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import refuse_interpreter_bfloat16
from .gemm_configs import TileConfig
from .gemm_plan import TUNING, Launch, make_launch, plan, problems
from .launch import run


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
    # Ragged edges, known at launch: whole-tile problems compile without masks. (A fixed
    # config skips this wrapper: gemm_plan.masks computes the same, cheaper.)
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

_LAUNCHES: dict[tuple, Launch | None] = {}  # per call signature; see gemm()


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
    refuse_interpreter_bfloat16(a.dtype, "a")
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
        launch = plan(a, b, bias, out, allow_tf32, tma, config)
        if len(_LAUNCHES) >= 4096:
            _LAUNCHES.clear()
        _LAUNCHES[key] = launch
    if launch is not None:  # one launch on the operands as given (views share pointers)
        picked = _run(launch, a, b, bias, out, float(alpha), float(beta))
        if picked is not None:  # next time, straight to the config picked for this call
            _LAUNCHES[key] = launch._replace(config=picked)
        return

    # Batch dims that cannot merge into one: a launch per element of the leading ones.
    for a3, b3, c3, o3 in problems(a, b, bias, out):
        _run(make_launch(a3, b3, c3, o3, allow_tf32, tma, config), a3, b3, c3, o3,
             float(alpha), float(beta))


def _run(launch: Launch, a, b, bias, out, alpha: float, beta: float) -> TileConfig | None:
    """Launch the kernel on the operands' data pointers; returns the config the launcher
    picked (None: the launch had one)."""
    args = (a, b, out if bias is None else bias, out, *launch.args, alpha, beta,
            *launch.keys)
    return run(_gemm_kernel, launch.grid, args, launch.meta, TUNING, config=launch.config,
               tune=launch.tune, allocator=launch.tma)
