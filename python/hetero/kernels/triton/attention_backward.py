"""Flash attention backward in Triton (FlashAttention-2, Dao 2023, Algorithm 2; the
layout of Triton's fused-attention tutorial). Semantics and conventions: see
``attention.py``; the configuration tables: ``attention_configs.py``; the device helpers
shared with the forward: ``common.py``; the launcher: ``launch.py``.

With ``s = q k^T scale (+ mask)`` in log2 units and the forward's log-sum-exp, the
probabilities are recomputed block by block, ``p = exp2(s - lse * log2(e))``, and

    dv = p^T dout          dp = dout v^T          ds = p * (dp - delta)
    dq = scale * ds k      dk = scale * ds^T q    delta = rowsum(dout * out)

Three launches, no atomics:

1. ``_bwd_preprocess``: ``delta`` (float32, ``(B, Hq, Sq)``).
2. ``_bwd_dkdv``: one program per (key block of ``BLOCK_N``, batch, KV head) keeps k,
   v and the float32 dk, dv accumulators resident and streams the query blocks of
   every query head of its group (GQA/MQA gradients sum over the group inside the
   program: no repeated K/V, no atomics). Causal: the query blocks crossing the
   diagonal are a masked stage, the ones below it an unmasked stage.
3. ``_bwd_dq``: one program per (query block, batch, query head) streams the key
   blocks, as the forward does (same two stages), and writes dq once.

Separate dk/dv and dq kernels cost recomputing ``q k^T`` and ``dout v^T`` twice, but
avoid atomic float32 accumulation of dq (non-deterministic and a zeroed float32
buffer plus a cast pass) and let each kernel be tuned on its own.

Rows that see no key have ``lse = +inf``: their ``p`` is 0 and so are their
contributions. Grads are returned in the input dtype, accumulated in float32.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import attention_configs as configs
from . import next_pow2
from .common import (_LOG2E, LOG2E, _apply_user_mask, _key_stages, _load_2d, _mask_scores,
                     _query_program, check_inputs, head_block, precision)
from .launch import run


@triton.jit
def _bwd_preprocess(Out, DOut, Delta,
                    stride_ob, stride_oh, stride_om, stride_od,
                    stride_db, stride_dh, stride_dm, stride_dd,
                    Hq, Sq, HEAD_DV: tl.constexpr, BLOCK_DV: tl.constexpr,
                    BLOCK_M: tl.constexpr):
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // Hq).to(tl.int64)
    h = (bh % Hq).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_dv = tl.arange(0, BLOCK_DV)
    o = _load_2d(Out + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_om
                 + offs_dv[None, :] * stride_od, offs_m, Sq, offs_dv, HEAD_DV, True,
                 BLOCK_DV != HEAD_DV)                                      # (BLOCK_M, BLOCK_DV)
    do = _load_2d(DOut + b * stride_db + h * stride_dh + offs_m[:, None] * stride_dm
                  + offs_dv[None, :] * stride_dd, offs_m, Sq, offs_dv, HEAD_DV, True,
                  BLOCK_DV != HEAD_DV)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)               # (BLOCK_M,)
    tl.store(Delta + bh.to(tl.int64) * Sq + offs_m, delta, mask=offs_m < Sq)


@triton.jit
def _bwd_dkdv_inner(dk, dv, k, v, Q, DO, Lse, Delta, Mask, lo, hi, offs_n, Sq, Sk, diag,
                    qk_scale, stride_qm, stride_qd, stride_dom, stride_dod,
                    stride_mm, stride_mn,
                    HEAD_D: tl.constexpr, HEAD_DV: tl.constexpr, BLOCK_M: tl.constexpr,
                    BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, MASKED: tl.constexpr,
                    MASK_KIND: tl.constexpr, PRECISION: tl.constexpr):
    """Queries [lo, hi) of one head into dk, dv (BLOCK_N, ...). MASKED: causal."""
    offs_m = lo + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    q_ptrs = Q + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd  # (BLOCK_M, BLOCK_D)
    do_ptrs = DO + offs_m[:, None] * stride_dom + offs_dv[None, :] * stride_dod  # (.., BLOCK_DV)
    m_ptrs = Mask + offs_n[:, None] * stride_mn + offs_m[None, :] * stride_mm  # (BLOCK_N, BLOCK_M)
    for start_m in tl.range(lo, hi, BLOCK_M):
        rows = start_m + tl.arange(0, BLOCK_M)
        q = _load_2d(q_ptrs, rows, Sq, offs_d, HEAD_D, True, BLOCK_D != HEAD_D)
        lse2 = tl.load(Lse + rows, mask=rows < Sq, other=float("inf")) * _LOG2E
        s_t = tl.dot(k, tl.trans(q), input_precision=PRECISION) * qk_scale  # (BLOCK_N, BLOCK_M)
        if MASK_KIND != 0:
            s_t = _apply_user_mask(s_t, m_ptrs, offs_n, Sk, rows, Sq, MASK_KIND)
        if MASKED:
            s_t = tl.where(rows[None, :] + diag >= offs_n[:, None], s_t, float("-inf"))
        p_t = tl.exp2(s_t - lse2[None, :])
        do = _load_2d(do_ptrs, rows, Sq, offs_dv, HEAD_DV, True, BLOCK_DV != HEAD_DV)
        dv = tl.dot(p_t.to(do.dtype), do, dv, input_precision=PRECISION)  # (BLOCK_N, BLOCK_DV)
        delta = tl.load(Delta + rows, mask=rows < Sq, other=0.0)
        dp_t = tl.dot(v, tl.trans(do), input_precision=PRECISION)         # (BLOCK_N, BLOCK_M)
        ds_t = p_t * (dp_t - delta[None, :])
        dk = tl.dot(ds_t.to(q.dtype), q, dk, input_precision=PRECISION)   # (BLOCK_N, BLOCK_D)
        q_ptrs += BLOCK_M * stride_qm
        do_ptrs += BLOCK_M * stride_dom
        m_ptrs += BLOCK_M * stride_mm
    return dk, dv


@triton.jit
def _bwd_dkdv(Q, K, V, DO, Lse, Delta, Mask, DK, DV,
              stride_qb, stride_qh, stride_qm, stride_qd,
              stride_kb, stride_kh, stride_kn, stride_kd,
              stride_vb, stride_vh, stride_vn, stride_vd,
              stride_dob, stride_doh, stride_dom, stride_dod,
              stride_dkb, stride_dkh, stride_dkn, stride_dkd,
              stride_dvb, stride_dvh, stride_dvn, stride_dvd,
              stride_mb, stride_mh, stride_mm, stride_mn,
              Hq, Hkv, Sq, Sk, group, qk_scale, scale,
              SQ_KEY, SK_KEY,  # autotuning keys only
              HEAD_D: tl.constexpr, HEAD_DV: tl.constexpr, CAUSAL: tl.constexpr,
              MASK_KIND: tl.constexpr, PRECISION: tl.constexpr, BLOCK_D: tl.constexpr,
              BLOCK_DV: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    pid_n = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // Hkv).to(tl.int64)
    hk = (bh % Hkv).to(tl.int64)
    start_n = pid_n * BLOCK_N
    offs_n = start_n + tl.arange(0, BLOCK_N)                               # (BLOCK_N,)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    k = _load_2d(K + b * stride_kb + hk * stride_kh + offs_n[:, None] * stride_kn
                 + offs_d[None, :] * stride_kd, offs_n, Sk, offs_d, HEAD_D, True,
                 BLOCK_D != HEAD_D)                                        # (BLOCK_N, BLOCK_D)
    v = _load_2d(V + b * stride_vb + hk * stride_vh + offs_n[:, None] * stride_vn
                 + offs_dv[None, :] * stride_vd, offs_n, Sk, offs_dv, HEAD_DV, True,
                 BLOCK_DV != HEAD_DV)                                      # (BLOCK_N, BLOCK_DV)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_DV], dtype=tl.float32)

    diag = Sk - Sq
    if CAUSAL:  # queries i >= j - diag see key j; below start_n + BLOCK_N - 1 - diag, all keys
        lo = tl.minimum(tl.maximum(start_n - diag, 0), Sq)
        mid = tl.minimum(lo + tl.cdiv(tl.maximum(start_n + BLOCK_N - 1 - diag - lo, 0),
                                      BLOCK_M) * BLOCK_M, Sq)
    else:
        lo = 0
        mid = 0
    for g in range(0, group):
        h = hk * group + g
        Qh = Q + b * stride_qb + h * stride_qh
        DOh = DO + b * stride_dob + h * stride_doh
        row0 = (b * Hq + h) * Sq
        Maskh = Mask + b * stride_mb + h * stride_mh
        dk, dv = _bwd_dkdv_inner(dk, dv, k, v, Qh, DOh, Lse + row0, Delta + row0, Maskh,
                                 lo, mid, offs_n, Sq, Sk, diag, qk_scale,
                                 stride_qm, stride_qd, stride_dom, stride_dod,
                                 stride_mm, stride_mn, HEAD_D, HEAD_DV, BLOCK_M, BLOCK_D,
                                 BLOCK_DV, CAUSAL, MASK_KIND, PRECISION)
        dk, dv = _bwd_dkdv_inner(dk, dv, k, v, Qh, DOh, Lse + row0, Delta + row0, Maskh,
                                 mid, Sq, offs_n, Sq, Sk, diag, qk_scale,
                                 stride_qm, stride_qd, stride_dom, stride_dod,
                                 stride_mm, stride_mn, HEAD_D, HEAD_DV, BLOCK_M, BLOCK_D,
                                 BLOCK_DV, False, MASK_KIND, PRECISION)

    dk *= scale
    rows_ok = offs_n[:, None] < Sk
    dk_ptrs = (DK + b * stride_dkb + hk * stride_dkh
               + offs_n[:, None] * stride_dkn + offs_d[None, :] * stride_dkd)
    dv_ptrs = (DV + b * stride_dvb + hk * stride_dvh
               + offs_n[:, None] * stride_dvn + offs_dv[None, :] * stride_dvd)
    tl.store(dk_ptrs, dk.to(DK.dtype.element_ty), mask=rows_ok & (offs_d[None, :] < HEAD_D))
    tl.store(dv_ptrs, dv.to(DV.dtype.element_ty), mask=rows_ok & (offs_dv[None, :] < HEAD_DV))


@triton.jit
def _bwd_dq_inner(dq, q, do, lse2, delta, K, V, Mask, lo, hi, offs_m, Sq, Sk, diag,
                  qk_scale, stride_kn, stride_kd, stride_vn, stride_vd,
                  stride_mm, stride_mn,
                  HEAD_D: tl.constexpr, HEAD_DV: tl.constexpr, BLOCK_N: tl.constexpr,
                  BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, MASKED: tl.constexpr,
                  CAUSAL: tl.constexpr, MASK_KIND: tl.constexpr, PRECISION: tl.constexpr):
    """Keys [lo, hi) into dq (BLOCK_M, BLOCK_D). MASKED: key bounds and causal."""
    offs_n = lo + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    k_ptrs = K + offs_n[:, None] * stride_kn + offs_d[None, :] * stride_kd    # (BLOCK_N, BLOCK_D)
    v_ptrs = V + offs_n[:, None] * stride_vn + offs_dv[None, :] * stride_vd  # (BLOCK_N, BLOCK_DV)
    m_ptrs = Mask + offs_m[:, None] * stride_mm + offs_n[None, :] * stride_mn  # (BLOCK_M, BLOCK_N)
    for start_n in tl.range(lo, hi, BLOCK_N):
        cols = start_n + tl.arange(0, BLOCK_N)
        k = _load_2d(k_ptrs, cols, Sk, offs_d, HEAD_D, MASKED, BLOCK_D != HEAD_D)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N)
        s = _mask_scores(s, m_ptrs, offs_m, Sq, cols, Sk, diag, MASKED, CAUSAL, MASK_KIND)
        p = tl.exp2(s - lse2[:, None])
        v = _load_2d(v_ptrs, cols, Sk, offs_dv, HEAD_DV, MASKED, BLOCK_DV != HEAD_DV)
        dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)           # (BLOCK_M, BLOCK_N)
        ds = p * (dp - delta[:, None])
        dq = tl.dot(ds.to(k.dtype), k, dq, input_precision=PRECISION)     # (BLOCK_M, BLOCK_D)
        k_ptrs += BLOCK_N * stride_kn
        v_ptrs += BLOCK_N * stride_vn
        m_ptrs += BLOCK_N * stride_mn
    return dq


@triton.jit
def _bwd_dq(Q, K, V, DO, Lse, Delta, Mask, DQ,
            stride_qb, stride_qh, stride_qm, stride_qd,
            stride_kb, stride_kh, stride_kn, stride_kd,
            stride_vb, stride_vh, stride_vn, stride_vd,
            stride_dob, stride_doh, stride_dom, stride_dod,
            stride_dqb, stride_dqh, stride_dqm, stride_dqd,
            stride_mb, stride_mh, stride_mm, stride_mn,
            Hq, Sq, Sk, group, qk_scale, scale,
            SQ_KEY, SK_KEY,  # autotuning keys only
            HEAD_D: tl.constexpr, HEAD_DV: tl.constexpr, CAUSAL: tl.constexpr,
            MASK_KIND: tl.constexpr, PRECISION: tl.constexpr, BLOCK_D: tl.constexpr,
            BLOCK_DV: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    bh, b, h, hk, start_m = _query_program(Hq, group, CAUSAL, BLOCK_M)
    offs_m = start_m + tl.arange(0, BLOCK_M)                               # (BLOCK_M,)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    q = _load_2d(Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qm
                 + offs_d[None, :] * stride_qd, offs_m, Sq, offs_d, HEAD_D, True,
                 BLOCK_D != HEAD_D)                                        # (BLOCK_M, BLOCK_D)
    do = _load_2d(DO + b * stride_dob + h * stride_doh + offs_m[:, None] * stride_dom
                  + offs_dv[None, :] * stride_dod, offs_m, Sq, offs_dv, HEAD_DV, True,
                  BLOCK_DV != HEAD_DV)                                     # (BLOCK_M, BLOCK_DV)
    row0 = bh.to(tl.int64) * Sq
    lse2 = tl.load(Lse + row0 + offs_m, mask=offs_m < Sq, other=float("inf")) * _LOG2E
    delta = tl.load(Delta + row0 + offs_m, mask=offs_m < Sq, other=0.0)
    K += b * stride_kb + hk * stride_kh
    V += b * stride_vb + hk * stride_vh
    Mask += b * stride_mb + h * stride_mh
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    diag = Sk - Sq
    full_end, hi = _key_stages(start_m, diag, Sk, CAUSAL, BLOCK_M, BLOCK_N)
    dq = _bwd_dq_inner(dq, q, do, lse2, delta, K, V, Mask, 0, full_end, offs_m, Sq, Sk,
                       diag, qk_scale, stride_kn, stride_kd, stride_vn, stride_vd,
                       stride_mm, stride_mn, HEAD_D, HEAD_DV, BLOCK_N, BLOCK_D, BLOCK_DV,
                       False, CAUSAL, MASK_KIND, PRECISION)
    dq = _bwd_dq_inner(dq, q, do, lse2, delta, K, V, Mask, full_end, hi, offs_m, Sq, Sk,
                       diag, qk_scale, stride_kn, stride_kd, stride_vn, stride_vd,
                       stride_mm, stride_mn, HEAD_D, HEAD_DV, BLOCK_N, BLOCK_D, BLOCK_DV,
                       True, CAUSAL, MASK_KIND, PRECISION)
    dq *= scale
    dq_ptrs = (DQ + b * stride_dqb + h * stride_dqh
               + offs_m[:, None] * stride_dqm + offs_d[None, :] * stride_dqd)
    tl.store(dq_ptrs, dq.to(DQ.dtype.element_ty),
             mask=(offs_m[:, None] < Sq) & (offs_d[None, :] < HEAD_D))


# ---------------------------------------------------------------------------------------
# Launcher
# ---------------------------------------------------------------------------------------
def attention_backward(dout, q, k, v, out, lse, mask, causal, scale, *,
                       allow_tf32=False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients ``(dq, dk, dv)`` of :func:`~.attention.attention_forward`'s ``out`` for
    the upstream gradient ``dout (B, Hq, Sq, Dv)``, in the inputs' dtype.

    ``out`` and ``lse`` are what ``attention_forward`` wrote and returned (``lse`` in
    natural-log units); the other arguments are the forward's. The mask gets no
    gradient. dk/dv of a KV head sum over the query heads of its group."""
    mask_kind, mask_t, mask_strides = check_inputs(q, k, v, mask)
    B, Hq, Sq, D = q.shape
    Hkv, Sk, Dv = k.shape[1], k.shape[2], v.shape[3]
    if B * Hq * Sq * Sk == 0:  # nothing seen: every gradient is zero
        return torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    dq = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    dk = torch.empty(k.shape, dtype=k.dtype, device=k.device)
    dv = torch.empty(v.shape, dtype=v.dtype, device=v.device)
    lse = lse.to(torch.float32).contiguous()
    delta = torch.empty((B, Hq, Sq), dtype=torch.float32, device=q.device)
    block_d, block_dv = head_block(D), head_block(Dv)
    group = Hq // Hkv
    qk_scale = float(scale) * LOG2E
    shared = dict(HEAD_D=D, HEAD_DV=Dv, CAUSAL=bool(causal), MASK_KIND=mask_kind,
                  PRECISION=precision(q, allow_tf32), BLOCK_D=block_d, BLOCK_DV=block_dv)

    pre_rows = 16 if Dv > 128 else 64  # (rows, BLOCK_DV) tiles of out and dout
    run(_bwd_preprocess, (triton.cdiv(Sq, pre_rows), B * Hq),
        (out, dout, delta, *out.stride(), *dout.stride(), Hq, Sq),
        dict(HEAD_DV=Dv, BLOCK_DV=block_dv, BLOCK_M=pre_rows))

    def dkdv_grid(meta):
        return (triton.cdiv(Sk, meta["BLOCK_N"]), B * Hkv)

    run(_bwd_dkdv, dkdv_grid,
        (q, k, v, dout, lse, delta, mask_t, dk, dv, *q.stride(), *k.stride(),
         *v.stride(), *dout.stride(), *dk.stride(), *dv.stride(), *mask_strides,
         Hq, Hkv, Sq, Sk, group, qk_scale, float(scale), next_pow2(Sq), next_pow2(Sk)),
        shared, configs.BWD_DKDV, tune=configs.AUTOTUNE)

    def dq_grid(meta):
        return (triton.cdiv(Sq, meta["BLOCK_M"]), B * Hq)

    run(_bwd_dq, dq_grid,
        (q, k, v, dout, lse, delta, mask_t, dq, *q.stride(), *k.stride(), *v.stride(),
         *dout.stride(), *dq.stride(), *mask_strides, Hq, Sq, Sk, group, qk_scale,
         float(scale), next_pow2(Sq), next_pow2(Sk)),
        shared, configs.BWD_DQ, tune=configs.AUTOTUNE)
    return dq, dk, dv
