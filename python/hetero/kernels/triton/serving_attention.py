"""Serving attention in Triton: packed variable-length sequences and a paged KV cache,
one kernel for both.

What it computes: for each sequence ``b`` and query head ``h``, the sequence's queries
``q[cu_q[b]:cu_q[b + 1], h]`` attend to its keys — rows ``cu_k[b]:cu_k[b + 1]`` of a
packed ``k``, or, with a block table, key ``j`` in row ``j % block_size`` of block
``block_table[b, j // block_size]`` of the cache — with hetero's serving mask (query
``i`` aligned to key ``p = i + Sk - Sq``, window ``p - left <= j <= p + right``, causal
bounding ``right`` by 0, softcap before masking). Rows that see no key are zeros.

The algorithm: flash attention's online softmax. One program takes ``BLOCK_M`` queries
of one sequence and one query head (the (sequence, first query) of each program is
listed by the host, so short and long sequences share one grid), walks the keys the
block can see in ``BLOCK_N`` tiles — through the block table when paged, each key row
read at its own page — and keeps ``m`` (row max), ``l`` (row sum) and the ``(BLOCK_M,
Dv)`` accumulator in float32. Head dims are padded to powers of two with masks.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .launch import run

# Tiles: BLOCK_M queries x BLOCK_N keys (tl.dot needs 16 or more on each side).
BLOCK_M = 16
BLOCK_N = 32


@triton.jit
def _serving_attention_kernel(
        q, k, v, out, lse, cu_q, starts_k, seq_lens, table, tile_seq, tile_row,
        stride_qt, stride_qh, stride_qd, stride_kb, stride_kr, stride_kh, stride_kd,
        stride_vb, stride_vr, stride_vh, stride_vd, stride_ot, stride_oh, stride_od,
        stride_lh, stride_lt, stride_tb, stride_tj,
        group, block_size, scale, softcap, window_left, window_right,
        D: tl.constexpr, DV: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
        PAGED: tl.constexpr, CAUSAL: tl.constexpr, SOFTCAP: tl.constexpr, WITH_LSE: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    tile, h = tl.program_id(0), tl.program_id(1)
    b = tl.load(tile_seq + tile)
    m0 = tl.load(tile_row + tile)
    q0 = tl.load(cu_q + b)
    sq = tl.load(cu_q + b + 1) - q0
    sk = tl.load(seq_lens + b)
    k0 = tl.load(starts_k + b)  # first key row of a packed sequence (0 when paged)
    hkv = h // group

    rows = m0 + tl.arange(0, BLOCK_M)
    row_ok = rows < sq
    d = tl.arange(0, BLOCK_D)
    dv = tl.arange(0, BLOCK_DV)
    qt = tl.load(q + (q0 + rows)[:, None] * stride_qt + h * stride_qh + d[None, :] * stride_qd,
                 mask=row_ok[:, None] & (d[None, :] < D), other=0.0)

    # Keys the block sees: [lo, hi) from its first and last query (aligned to p).
    p = rows + sk - sq
    p_first = m0 + sk - sq
    p_last = tl.minimum(m0 + BLOCK_M, sq) - 1 + sk - sq
    lo = tl.maximum(tl.where(window_left >= 0, p_first - window_left, 0), 0)
    if CAUSAL:
        hi = tl.minimum(p_last + 1, sk)
    else:
        hi = tl.where(window_right >= 0, tl.minimum(p_last + window_right + 1, sk), sk)
    hi = tl.maximum(hi, 0)
    lo = (lo // BLOCK_N) * BLOCK_N

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], tl.float32)
    for n0 in range(lo, hi, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < hi
        if PAGED:
            blk = tl.load(table + b * stride_tb + (cols // block_size) * stride_tj, mask=col_ok,
                          other=0)
            base_k = blk.to(tl.int64) * stride_kb + (cols % block_size) * stride_kr
            base_v = blk.to(tl.int64) * stride_vb + (cols % block_size) * stride_vr
        else:
            base_k = (k0 + cols).to(tl.int64) * stride_kr
            base_v = (k0 + cols).to(tl.int64) * stride_vr
        kt = tl.load(k + base_k[None, :] + hkv * stride_kh + d[:, None] * stride_kd,
                     mask=col_ok[None, :] & (d[:, None] < D), other=0.0)
        s = tl.dot(qt, kt, input_precision="ieee") * scale
        if SOFTCAP:
            s = softcap * (2.0 / (1.0 + tl.exp(-2.0 * s / softcap)) - 1.0)  # tanh
        seen = row_ok[:, None] & col_ok[None, :]
        if CAUSAL:
            seen = seen & (cols[None, :] <= p[:, None])
        else:
            seen = seen & ((window_right < 0) | (cols[None, :] <= p[:, None] + window_right))
        seen = seen & ((window_left < 0) | (cols[None, :] >= p[:, None] - window_left))
        s = tl.where(seen, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        shift = tl.where(m_new == float("-inf"), 0.0, m_new)
        probs = tl.exp(s - shift[:, None])
        rescale = tl.exp(m_i - shift)
        l_i = l_i * rescale + tl.sum(probs, 1)
        vt = tl.load(v + base_v[:, None] + hkv * stride_vh + dv[None, :] * stride_vd,
                     mask=col_ok[:, None] & (dv[None, :] < DV), other=0.0)
        acc = acc * rescale[:, None] + tl.dot(probs.to(vt.dtype), vt, input_precision="ieee")
        m_i = m_new

    result = tl.where(l_i[:, None] == 0.0, 0.0, acc / l_i[:, None])
    tl.store(out + (q0 + rows)[:, None] * stride_ot + h * stride_oh + dv[None, :] * stride_od,
             result.to(out.dtype.element_ty), mask=row_ok[:, None] & (dv[None, :] < DV))
    if WITH_LSE:
        value = tl.where(l_i == 0.0, float("inf"), m_i + tl.log(l_i))
        tl.store(lse + h * stride_lh + (q0 + rows) * stride_lt, value, mask=row_ok)


def _tiles(starts_q: list[int], device) -> tuple[torch.Tensor, torch.Tensor]:
    """(sequence, first query) of every BLOCK_M-query program."""
    seqs, rows = [], []
    for b, (a, z) in enumerate(zip(starts_q, starts_q[1:])):
        for m0 in range(0, z - a, BLOCK_M):
            seqs.append(b)
            rows.append(m0)
    return (torch.tensor(seqs, dtype=torch.int32, device=device),
            torch.tensor(rows, dtype=torch.int32, device=device))


def _launch(q, k, v, out, lse, cu_q, starts_k, seq_lens, table, causal, scale, window, softcap):
    tile_seq, tile_row = _tiles(cu_q.tolist(), q.device)
    if tile_seq.numel() == 0 or out.numel() == 0:
        if lse is not None:
            lse.fill_(math.inf)
        return
    paged = table is not None
    D, DV = q.shape[2], v.shape[-1]
    kr, vr = (k.stride()[:2], v.stride()[:2]) if paged else ((0, k.stride(0)), (0, v.stride(0)))
    table_arg = table if paged else seq_lens  # unread when not paged
    lse_arg = lse if lse is not None else out
    lse_strides = lse.stride() if lse is not None else (0, 0)
    grid = (tile_seq.numel(), q.shape[1])
    args = (q, k, v, out, lse_arg, cu_q, starts_k, seq_lens, table_arg, tile_seq, tile_row,
            *q.stride(), *kr, *k.stride()[-2:], *vr, *v.stride()[-2:], *out.stride(),
            *lse_strides, *(table.stride() if paged else (0, 0)),
            q.shape[1] // k.shape[-2], k.shape[1] if paged else 1, scale, softcap,
            window[0], window[1])
    meta = dict(D=D, DV=DV, BLOCK_D=max(16, triton.next_power_of_2(D)),
                BLOCK_DV=max(16, triton.next_power_of_2(DV)), PAGED=paged, CAUSAL=causal,
                SOFTCAP=softcap > 0, WITH_LSE=lse is not None, BLOCK_M=BLOCK_M,
                BLOCK_N=BLOCK_N)
    run(_serving_attention_kernel, grid, args, meta)


def varlen_attention(q, k, v, cu_q, cu_k, causal: bool, scale: float, window, softcap: float,
                     out, lse=None) -> None:
    """Packed sequences (``q (Tq, Hq, D)``, ``k (Tk, Hkv, D)``, ``v (Tk, Hkv, Dv)``, int32
    ``cu_q``/``cu_k``) into ``out (Tq, Hq, Dv)`` and, when given, ``lse (Hq, Tq)``."""
    seq_lens = (cu_k[1:] - cu_k[:-1]).to(torch.int32)
    _launch(q, k, v, out, lse, cu_q, cu_k[:-1].contiguous(), seq_lens, None, causal, scale,
            window, softcap)


def paged_attention(q, k_cache, v_cache, block_table, seq_lens, cu_q, causal: bool,
                    scale: float, window, softcap: float, out) -> None:
    """Queries (``q (Tq, Hq, D)``, int32 ``cu_q``) over ``(num_blocks, block_size, Hkv,
    D)`` caches through the int32 ``block_table``, into ``out (Tq, Hq, Dv)``."""
    starts_k = torch.zeros_like(seq_lens)
    _launch(q, k_cache, v_cache, out, None, cu_q, starts_k, seq_lens, block_table, causal,
            scale, window, softcap)
