"""What the flash-attention kernels share: constants, ``@triton.jit`` helpers and the
host-side checks. ``attention.py`` (forward) and ``attention_backward.py`` both import
this module and nothing of each other.

The forward and dq kernels share the program layout (:func:`_query_program`), the key
stages (:func:`_key_stages`) and the score masking (:func:`_mask_scores`): both must see
exactly the same keys, or the gradients would not be those of the forward's output.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import refuse_interpreter_bfloat16

LOG2E = 1.4426950408889634
_LOG2E = tl.constexpr(LOG2E)  # for kernels (globals must be constexpr there)
_LN2 = tl.constexpr(0.6931471805599453)
MAX_HEAD_DIM = 256
MASK_NONE, MASK_BOOL, MASK_ADDITIVE = 0, 1, 2


# ---------------------------------------------------------------------------------------
# Device helpers
# ---------------------------------------------------------------------------------------
@triton.jit
def _load_2d(ptrs, rows, n_rows, cols, N_COLS: tl.constexpr,
             CHECK_ROWS: tl.constexpr, CHECK_COLS: tl.constexpr):
    """Load a (R, C) tile, zero-filling rows >= n_rows / cols >= N_COLS when checked
    (an unchecked dim loads unmasked: whole blocks, and head dims that are already a
    power of two, vectorise)."""
    if CHECK_ROWS and CHECK_COLS:
        return tl.load(ptrs, mask=(rows[:, None] < n_rows) & (cols[None, :] < N_COLS),
                       other=0.0)
    elif CHECK_ROWS:
        return tl.load(ptrs, mask=rows[:, None] < n_rows, other=0.0)
    elif CHECK_COLS:
        return tl.load(ptrs, mask=cols[None, :] < N_COLS, other=0.0)
    else:
        return tl.load(ptrs)


@triton.jit
def _apply_user_mask(s, ptrs, rows, n_rows, cols, n_cols, MASK_KIND: tl.constexpr):
    """Apply the caller's mask tile at ``ptrs`` (R, C) to log2-unit scores ``s``."""
    inside = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    if MASK_KIND == 1:  # bool, stored as bytes: nonzero = may attend
        keep = tl.load(ptrs, mask=inside, other=0)
        s = tl.where(keep != 0, s, float("-inf"))
    else:  # additive, natural-log units
        s = s + tl.load(ptrs, mask=inside, other=0.0).to(tl.float32) * _LOG2E
    return s


@triton.jit
def _mask_scores(s, m_ptrs, offs_m, Sq, cols, Sk, diag, MASKED: tl.constexpr,
                 CAUSAL: tl.constexpr, MASK_KIND: tl.constexpr):
    """Scores ``s`` (BLOCK_M, BLOCK_N) of query rows ``offs_m`` against keys ``cols`` as
    those rows see them: the user mask at ``m_ptrs`` applied and, when MASKED, keys past
    Sk and (CAUSAL) right of the diagonal set to -inf."""
    if MASK_KIND != 0:
        s = _apply_user_mask(s, m_ptrs, offs_m, Sq, cols, Sk, MASK_KIND)
    if MASKED:
        ok = cols[None, :] < Sk
        if CAUSAL:
            ok = ok & (cols[None, :] <= offs_m[:, None] + diag)
        s = tl.where(ok, s, float("-inf"))
    return s


@triton.jit
def _query_program(Hq, group, CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr):
    """``(bh, b, h, hk, start_m)`` of a program in a ``(query blocks, B * Hq)`` grid:
    batch, query head and its kv head (int64), and the block's first query row. Causal
    grids run the longest rows (the last query blocks) first, so the short programs
    fill in the tail."""
    pid_m = tl.program_id(0)
    if CAUSAL:
        pid_m = tl.num_programs(0) - 1 - pid_m
    bh = tl.program_id(1)
    b = (bh // Hq).to(tl.int64)
    h = bh % Hq
    hk = (h // group).to(tl.int64)
    h = h.to(tl.int64)
    return bh, b, h, hk, pid_m * BLOCK_M


@triton.jit
def _key_stages(start_m, diag, Sk, CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr,
                BLOCK_N: tl.constexpr):
    """``(full_end, hi)`` for query rows [start_m, start_m + BLOCK_M): every row sees
    all of keys [0, full_end) (whole blocks, unmasked stage); keys [full_end, hi) need
    the bound and causal checks (masked stage); none sees a key from hi on."""
    if CAUSAL:  # keys seen by every row of the block: j <= start_m + diag
        full_end = tl.maximum(tl.minimum(start_m + diag + 1, Sk), 0) // BLOCK_N * BLOCK_N
        hi = tl.maximum(tl.minimum(start_m + BLOCK_M + diag, Sk), full_end)
    else:
        full_end = Sk // BLOCK_N * BLOCK_N
        hi = Sk
    return full_end, hi


# ---------------------------------------------------------------------------------------
# Host helpers
# ---------------------------------------------------------------------------------------
def check_inputs(q, k, v, mask):
    """Refusals the kernels cannot serve; returns the mask kind and its kernel view."""
    refuse_interpreter_bfloat16(q.dtype, "q")
    if q.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise TypeError(f"q: dtype {q.dtype} not supported (float16, bfloat16, float32)")
    for name, d in (("q", q.shape[3]), ("v", v.shape[3])):
        if d > MAX_HEAD_DIM:
            raise ValueError(f"{name}: head dim {d} above the supported {MAX_HEAD_DIM}")
    if mask is None:
        return MASK_NONE, q, (0, 0, 0, 0)
    if mask.dtype is torch.bool:
        return MASK_BOOL, mask.view(torch.uint8), mask.stride()
    return MASK_ADDITIVE, mask, mask.stride()


def precision(q, allow_tf32: bool) -> str:
    """``tl.dot``'s input precision: exact float32 products unless TF32 is allowed."""
    return "tf32" if allow_tf32 and q.dtype is torch.float32 else "ieee"


def head_block(d: int) -> int:
    """A head dim padded to a power of two (``tl.arange`` sizes are), at least 16
    (``tl.dot``'s smallest K)."""
    return max(16, triton.next_power_of_2(d))
