"""Flash attention in Triton: the forward pass (this file) and the backward pass
(``attention_backward.py``), for ``hetero.attention``'s exact semantics.

Algorithm: FlashAttention-2 (T. Dao, "FlashAttention-2: Faster Attention with Better
Parallelism and Work Partitioning", 2023), as in Triton's fused-attention tutorial.

Forward. One program owns ``BLOCK_M`` query rows of one (batch, query head) and streams
the keys/values of that head's kv head (``h // (Hq // Hkv)``: GQA/MQA read the shared
head, never a repeated copy) in blocks of ``BLOCK_N``, keeping an online softmax: the
running row maximum ``m``, the running sum ``l`` and the unnormalised output ``acc``, all
float32. Scores live in log2 units (``log2(e)`` is folded into the scale) so the
exponentials are ``exp2``. The key range is cut into two stages:

1. blocks that every row of the program sees completely (no bounds, no causal check:
   the fast path, where the row maximum is taken before scaling and the scale and
   the subtraction fuse into one FMA), then
2. the blocks on the causal diagonal and the last partial block, which are masked.

``causal`` is aligned bottom-right (query ``i`` sees key ``j <= i + Sk - Sq``). A user
mask (already expanded to ``(B, Hq, Sq, Sk)``, read through its strides, zero strides
included) is applied on every block: bool (``True`` = may attend) or additive (its
value times ``log2(e)`` is added to the scaled score; ``-inf`` allowed). A row that
sees no key keeps ``m = -inf, l = 0``: the shift is then taken as 0, so its weights are
``exp2(-inf) = 0`` and the row is written as zeros, and its log-sum-exp is ``+inf``.

LSE convention: ``attention_forward`` returns ``lse (B, Hq, Sq)`` float32 in NATURAL
log units of the scaled (and masked) scores, as PyTorch's ``logsumexp``; ``+inf`` for a
row that sees no key, so the backward's ``exp(s - lse)`` is 0 there and its gradients
are zero. NaN inputs propagate (nothing is sanitised).

Precision: ``tl.dot`` accumulates in float32; fp16/bf16 operands run on tensor cores,
float32 operands use ``input_precision="ieee"`` unless the caller passes
``allow_tf32=True``. The probabilities are rounded to the input dtype before ``P @ V``,
as FlashAttention does.

Configurations are data (``attention_configs.py``: a table per kernel and GPU family),
filtered by ``config_fits`` (shared memory, and a float32 accumulator budget per thread
against spills, for the head dims and dtype), then autotuned per (sequence-length
bucket, head dims, causal, mask kind, dtype) by the launcher every Triton kernel shares
(``launch.py``). With ``attention_configs.AUTOTUNE = False`` the first fitting
configuration of each table runs. Under the interpreter (``TRITON_INTERPRET=1``) one
small configuration runs and bfloat16 is refused: the interpreter's ``tl.dot``
multiplies raw bf16 bits. The device helpers and constants the forward and backward
kernels share are in ``common.py``.

Measured on an H100 (bf16, H=16, D=128, B·S=16k tokens, autotuned, 2026-11):
forward 390-450 TFLOP/s, 0.68-0.81x of ``scaled_dot_product_attention``, which
PyTorch 2.11 runs on cuDNN's Hopper kernel there (about 1.4x faster than its FA2
"flash" backend); backward 0.71-0.84x of SDPA's. Tried and dropped for lack of gain:
TMA tensor descriptors for the streamed K/V (within +-5%), one loop with the causal
check on every dk/dv block instead of the two stages (equal or slower).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from . import attention_configs as configs
from . import next_pow2
from .common import (_LN2, LOG2E, _key_stages, _load_2d, _mask_scores, _query_program,
                     check_inputs, head_block, precision)
from .launch import run

__all__ = ["attention", "attention_forward"]  # the backward: attention_backward.py


# ---------------------------------------------------------------------------------------
# Forward kernel
# ---------------------------------------------------------------------------------------
@triton.jit
def _fwd_inner(acc, l_i, m_i, q, K, V, Mask, lo, hi, offs_m, Sq, Sk, diag, qk_scale,
               stride_kn, stride_kd, stride_vn, stride_vd, stride_mm, stride_mn,
               HEAD_D: tl.constexpr, HEAD_DV: tl.constexpr, BLOCK_N: tl.constexpr,
               BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, MASKED: tl.constexpr,
               CAUSAL: tl.constexpr, MASK_KIND: tl.constexpr, POS_SCALE: tl.constexpr,
               PRECISION: tl.constexpr):
    """Keys [lo, hi) of this head (K, V: its base pointers). MASKED: key bounds and
    the causal diagonal."""
    offs_n = lo + tl.arange(0, BLOCK_N)                                   # (BLOCK_N,)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    k_ptrs = K + offs_n[:, None] * stride_kn + offs_d[None, :] * stride_kd    # (BLOCK_N, BLOCK_D)
    v_ptrs = V + offs_n[:, None] * stride_vn + offs_dv[None, :] * stride_vd  # (BLOCK_N, BLOCK_DV)
    m_ptrs = Mask + offs_m[:, None] * stride_mm + offs_n[None, :] * stride_mn  # (BLOCK_M, BLOCK_N)
    for start_n in tl.range(lo, hi, BLOCK_N):
        cols = start_n + tl.arange(0, BLOCK_N)
        k = _load_2d(k_ptrs, cols, Sk, offs_d, HEAD_D, MASKED, BLOCK_D != HEAD_D)
        qk = tl.dot(q, tl.trans(k), input_precision=PRECISION)          # (BLOCK_M, BLOCK_N)
        if MASKED or MASK_KIND != 0:
            s = _mask_scores(qk * qk_scale, m_ptrs, offs_m, Sq, cols, Sk, diag, MASKED,
                             CAUSAL, MASK_KIND)
            m_new = tl.maximum(m_i, tl.max(s, 1))                         # (BLOCK_M,)
            m_use = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows that saw nothing yet
            p = tl.exp2(s - m_use[:, None])
            alpha = tl.exp2(m_i - m_use)
        else:  # every score visible: max before scaling, then one FMA per score
            if POS_SCALE:
                m_new = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
            else:
                m_new = tl.maximum(m_i, tl.min(qk, 1) * qk_scale)
            p = tl.exp2(qk * qk_scale - m_new[:, None])
            alpha = tl.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]                                        # (BLOCK_M, BLOCK_DV)
        v = _load_2d(v_ptrs, cols, Sk, offs_dv, HEAD_DV, MASKED, BLOCK_DV != HEAD_DV)
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=PRECISION)
        m_i = m_new
        k_ptrs += BLOCK_N * stride_kn
        v_ptrs += BLOCK_N * stride_vn
        m_ptrs += BLOCK_N * stride_mn
    return acc, l_i, m_i


@triton.jit
def _attn_fwd(Q, K, V, Out, Lse, Mask,
              stride_qb, stride_qh, stride_qm, stride_qd,
              stride_kb, stride_kh, stride_kn, stride_kd,
              stride_vb, stride_vh, stride_vn, stride_vd,
              stride_ob, stride_oh, stride_om, stride_od,
              stride_mb, stride_mh, stride_mm, stride_mn,
              Hq, Sq, Sk, group, qk_scale,
              SQ_KEY, SK_KEY,  # autotuning keys only
              HEAD_D: tl.constexpr, HEAD_DV: tl.constexpr, CAUSAL: tl.constexpr,
              MASK_KIND: tl.constexpr, POS_SCALE: tl.constexpr, PRECISION: tl.constexpr,
              STORE_LSE: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    bh, b, h, hk, start_m = _query_program(Hq, group, CAUSAL, BLOCK_M)
    offs_m = start_m + tl.arange(0, BLOCK_M)                               # (BLOCK_M,)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)

    q_ptrs = (Q + b * stride_qb + h * stride_qh
              + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd)   # (BLOCK_M, BLOCK_D)
    q = _load_2d(q_ptrs, offs_m, Sq, offs_d, HEAD_D, True, BLOCK_D != HEAD_D)
    K += b * stride_kb + hk * stride_kh
    V += b * stride_vb + hk * stride_vh
    Mask += b * stride_mb + h * stride_mh

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], dtype=tl.float32)                  # (BLOCK_M, BLOCK_DV)

    diag = Sk - Sq
    full_end, hi = _key_stages(start_m, diag, Sk, CAUSAL, BLOCK_M, BLOCK_N)
    acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, K, V, Mask, 0, full_end, offs_m, Sq, Sk,
                               diag, qk_scale, stride_kn, stride_kd, stride_vn, stride_vd,
                               stride_mm, stride_mn, HEAD_D, HEAD_DV, BLOCK_N, BLOCK_D,
                               BLOCK_DV, False, CAUSAL, MASK_KIND, POS_SCALE, PRECISION)
    acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, K, V, Mask, full_end, hi, offs_m, Sq, Sk,
                               diag, qk_scale, stride_kn, stride_kd, stride_vn, stride_vd,
                               stride_mm, stride_mn, HEAD_D, HEAD_DV, BLOCK_N, BLOCK_D,
                               BLOCK_DV, True, CAUSAL, MASK_KIND, POS_SCALE, PRECISION)

    seen = l_i != 0.0  # False for rows that see no key (NaN stays NaN)
    l_safe = tl.where(seen, l_i, 1.0)
    inv_l = 1.0 / l_safe
    out = acc * inv_l[:, None]
    o_ptrs = (Out + b * stride_ob + h * stride_oh
              + offs_m[:, None] * stride_om + offs_dv[None, :] * stride_od)
    if BLOCK_DV == HEAD_DV:
        tl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=offs_m[:, None] < Sq)
    else:
        tl.store(o_ptrs, out.to(Out.dtype.element_ty),
                 mask=(offs_m[:, None] < Sq) & (offs_dv[None, :] < HEAD_DV))
    if STORE_LSE:
        lse = tl.where(seen, (m_i + tl.log2(l_safe)) * _LN2, float("inf"))
        tl.store(Lse + bh.to(tl.int64) * Sq + offs_m, lse, mask=offs_m < Sq)


# ---------------------------------------------------------------------------------------
# Launcher
# ---------------------------------------------------------------------------------------
def _forward(q, k, v, mask, causal, scale, out, allow_tf32, store_lse):
    mask_kind, mask_t, mask_strides = check_inputs(q, k, v, mask)
    B, Hq, Sq, D = q.shape
    Hkv, Sk, Dv = k.shape[1], k.shape[2], v.shape[3]
    lse = torch.empty((B, Hq, Sq), dtype=torch.float32, device=q.device) if store_lse \
        else None
    if B * Hq * Sq == 0:
        return lse
    if Sk == 0:
        out.zero_()
        if lse is not None:
            lse.fill_(math.inf)
        return lse

    def grid(meta):
        return (triton.cdiv(Sq, meta["BLOCK_M"]), B * Hq)

    args = (q, k, v, out, lse if lse is not None else out, mask_t,
            *q.stride(), *k.stride(), *v.stride(), *out.stride(), *mask_strides,
            Hq, Sq, Sk, Hq // Hkv, float(scale) * LOG2E, next_pow2(Sq), next_pow2(Sk))
    kwargs = dict(HEAD_D=D, HEAD_DV=Dv, CAUSAL=bool(causal), MASK_KIND=mask_kind,
                  POS_SCALE=scale >= 0, PRECISION=precision(q, allow_tf32),
                  STORE_LSE=store_lse, BLOCK_D=head_block(D), BLOCK_DV=head_block(Dv))
    run(_attn_fwd, grid, args, kwargs, configs.FWD, tune=configs.AUTOTUNE)
    return lse


def attention(q, k, v, mask, causal, scale, out, *, allow_tf32=False) -> None:
    """hetero's attention kernel: writes ``softmax(q k^T scale + mask) v`` into ``out``.

    ``q (B, Hq, Sq, D)``, ``k (B, Hkv, Sk, D)``, ``v (B, Hkv, Sk, Dv)``, ``out (B, Hq,
    Sq, Dv)``, any strides; ``mask`` None or expanded to ``(B, Hq, Sq, Sk)`` (bool or
    additive); ``causal`` bottom-right aligned; ``scale`` a python float."""
    _forward(q, k, v, mask, causal, scale, out, allow_tf32, store_lse=False)


def attention_forward(q, k, v, mask, causal, scale, out, *,
                      allow_tf32=False) -> torch.Tensor:
    """As :func:`attention`, and returns ``lse (B, Hq, Sq)`` float32: the natural-log
    log-sum-exp of each row's scaled, masked scores (``+inf`` for a row that sees no
    key), as :func:`.attention_backward.attention_backward` takes it."""
    return _forward(q, k, v, mask, causal, scale, out, allow_tf32, store_lse=True)
