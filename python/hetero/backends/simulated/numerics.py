"""The simulated kernels: a target's GEMM and attention numerics on CPU tensors.

Operands are rounded to what the unit consumes (fp16/bf16 as they are; fp32 in the
reduced mode to the model's mantissa width), the reduction runs in ``tile.k`` chunks —
each chunk's products summed exactly (float64) and added into a float32 accumulator with
one rounding — and the result is rounded once to the output dtype. Attention is the
FlashAttention-2 recurrence over key blocks as long as the core's memory allows, with
float32 running max / sum / output and the probabilities rounded to the input dtype
before they meet V, as a matrix unit consumes them. ``scaled_gemm`` follows the model's
:class:`~.models.LowPrecision` entry for the input encoding: exact products, ``k``-chunked
sums into an int32 (wrapping) or float32 accumulator, then the dequantisation stage —
float32 conversion, ``scale_a``, ``scale_b``, bias, one rounding each — and one rounding
to the output dtype. Slow by design: the point is the error a model would see on the
target, not speed.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.nn.functional as F

from ...ops.scaled_gemm.api import BLOCK
from .models import DeviceModel, LowPrecision

_mode: ContextVar[str | None] = ContextVar("hetero_sim_fp32_mode", default=None)
FP32_MODES = ("reduced", "exact")


@contextmanager
def fp32_mode(mode: str):
    """Within the block, simulated targets compute fp32 inputs ``"exact"`` or
    ``"reduced"`` (their model's reduced-mantissa mode) instead of their default."""
    if mode not in FP32_MODES:
        raise ValueError(f"mode: expected one of {FP32_MODES}, got {mode!r}")
    token = _mode.set(mode)
    try:
        yield
    finally:
        _mode.reset(token)


def round_mantissa(x: torch.Tensor, bits: int) -> torch.Tensor:
    """float32 ``x`` rounded to ``bits`` explicit mantissa bits, to nearest, ties to even
    (NaN and infinities unchanged; a value rounding past the largest finite is inf)."""
    drop = 23 - bits
    if drop <= 0:
        return x
    word = x.contiguous().view(torch.int32).to(torch.int64)
    sign, magnitude = word < 0, word & 0x7FFFFFFF
    keep_lsb = (magnitude >> drop) & 1
    magnitude = (magnitude + (1 << (drop - 1)) - 1 + keep_lsb) & ~((1 << drop) - 1)
    word = torch.where(sign, magnitude - 2**31, magnitude).to(torch.int32)
    return torch.where(torch.isfinite(x), word.view(torch.float32), x)


def consumed(t: torch.Tensor, model: DeviceModel) -> torch.Tensor:
    """``t`` as the matrix unit consumes it, as float64 (exact for every value)."""
    x = t.float()
    if t.dtype is torch.float32 and (_mode.get() or model.fp32_mode) == "reduced":
        x = round_mantissa(x, model.fp32_mantissa_bits)
    return x.double()


def tiled_matmul(a: torch.Tensor, b: torch.Tensor, tile_k: int) -> torch.Tensor:
    """float32 ``a @ b`` of float64 operands, reduced in ``tile_k`` chunks (K zero-padded
    to whole tiles): exact chunk sums, one float32 rounding per chunk."""
    k = a.shape[-1]
    pad = -k % tile_k
    if pad:
        a, b = F.pad(a, (0, pad)), F.pad(b, (0, 0, 0, pad))
    acc = torch.zeros(a.shape[:-1] + b.shape[-1:], dtype=torch.float32)
    for k0 in range(0, k + pad, tile_k):
        acc = (acc.double() + a[..., k0:k0 + tile_k] @ b[..., k0:k0 + tile_k, :]).float()
    return acc


def gemm(model: DeviceModel, args) -> None:
    """The gemm kernel (``args``: :class:`hetero.ops.gemm.GemmArgs`)."""
    acc = tiled_matmul(consumed(args.a, model), consumed(args.b, model), model.tile[2])
    acc = acc * args.alpha
    if args.bias is not None and args.beta != 0:
        acc = acc + args.beta * args.bias.float()
    args.out.copy_(acc)


def tiled_int_matmul(a: torch.Tensor, b: torch.Tensor, tile_k: int) -> torch.Tensor:
    """int32 ``a @ b`` of integer operands, reduced in ``tile_k`` chunks: each chunk's
    exact sum added into an int32 accumulator that wraps as two's complement does."""
    a, b = a.to(torch.int64), b.to(torch.int64)
    acc = torch.zeros(a.shape[:-1] + b.shape[-1:], dtype=torch.int32)
    for k0 in range(0, a.shape[-1], tile_k):
        acc = (acc.to(torch.int64) + a[..., k0:k0 + tile_k] @ b[..., k0:k0 + tile_k, :]
               ).to(torch.int32)
    return acc


def accumulate(unit: LowPrecision, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The unit's accumulator after ``a @ b`` (low-precision operands, as stored)."""
    if unit.accumulator is torch.int32:
        return tiled_int_matmul(a, b, unit.tile[2])
    return tiled_matmul(a.float().double(), b.float().double(), unit.tile[2])


def scaled_gemm(model: DeviceModel, args) -> None:
    """The scaled_gemm kernel (``args``: :class:`hetero.ops.scaled_gemm.ScaledGemmArgs`)."""
    unit = model.low_precision_for(args.a.dtype)
    a, b, out = args.a, args.b, args.out
    if out.dtype is torch.int32:  # torch._int_mm: the accumulator as it is
        out.copy_(accumulate(unit, a, b))
        return
    k, n = a.shape[1], b.shape[1]
    sa, sb = args.scale_a.float(), args.scale_b.float()
    if args.recipe == "block":  # one dequantisation per 128-deep K block
        blocks = [(k0, sa[:, i:i + 1], sb[i:i + 1].repeat_interleave(BLOCK, 1)[:, :n])
                  for i, k0 in enumerate(range(0, k, BLOCK))]
        depth = BLOCK
    else:
        blocks, depth = [(0, sa, sb)], max(k, 1)
    result = torch.zeros(out.shape, dtype=torch.float32) if not blocks else None
    for k0, block_a, block_b in blocks:
        part = accumulate(unit, a[:, k0:k0 + depth], b[k0:k0 + depth]).float()
        part = part * block_a * block_b  # float32: one rounding each
        result = part if result is None else result + part
    if args.bias is not None:
        result = result + args.bias.float()
    out.copy_(result)


def key_block(model: DeviceModel, head_dim: int, dtype: torch.dtype) -> int:
    """Longest key tile (a multiple of ``tile.n``) whose attention step fits one core's
    memory; 0 if even one ``tile.n`` does not fit."""
    rows, step = model.tile[0], model.tile[1]
    size = dtype.itemsize

    def need(block):  # Q tile, K and V tiles, fp32 scores and probabilities
        return size * (rows * head_dim + 2 * block * head_dim) + 2 * 4 * rows * block

    block = 0
    while block + step <= model.max_key_block and need(block + step) <= model.memory_per_core:
        block += step
    return block


def attention(model: DeviceModel, args) -> None:
    """The attention kernel (``args``: :class:`hetero.ops.attention.AttentionArgs`)."""
    args.out.copy_(attention_rows(model, args.q, args.k, args.v, args.mask, args.causal,
                                  args.scale)[0])


def attention_rows(model: DeviceModel, q, k, v, mask, causal: bool, scale: float):
    """Attention of ``q (B, Hq, Sq, D)`` over ``k``, ``v`` as the target computes it:
    ``(out, lse)``, float32, ``lse (B, Hq, Sq)`` natural-log (``+inf`` where a row sees
    no key)."""
    Hq, Sq, Sk = q.shape[1], q.shape[2], k.shape[2]
    group = Hq // k.shape[1]
    qd = consumed(q, model)
    kd = consumed(k, model).repeat_interleave(group, dim=1)
    vd = consumed(v, model).repeat_interleave(group, dim=1)
    block = key_block(model, max(q.shape[3], v.shape[3]), q.dtype)
    row_max = torch.full((*q.shape[:3], 1), -math.inf)
    row_sum = torch.zeros_like(row_max)
    acc = torch.zeros((*q.shape[:3], v.shape[3]))
    queries = torch.arange(Sq).unsqueeze(1)
    for j0 in range(0, Sk, block):
        j1 = min(Sk, j0 + block)
        scores = tiled_matmul(qd, kd[:, :, j0:j1].transpose(-1, -2), model.tile[2]) * scale
        if mask is not None:
            part = mask[..., j0:j1]
            scores = scores.masked_fill(~part, -math.inf) if part.dtype is torch.bool \
                else scores + part.float()
        if causal:
            hidden = torch.arange(j0, j1).unsqueeze(0) > queries + (Sk - Sq)
            scores = scores.masked_fill(hidden, -math.inf)
        new_max = torch.maximum(row_max, scores.amax(-1, keepdim=True))
        shift = torch.where(new_max == -math.inf, torch.zeros_like(new_max), new_max)
        probs = torch.exp(scores - shift)
        rescale = torch.exp(row_max - shift)
        row_sum = row_sum * rescale + probs.sum(-1, keepdim=True)
        probs_in = consumed(probs.to(q.dtype), model)  # what the unit multiplies V by
        acc = acc * rescale + tiled_matmul(probs_in, vd[:, :, j0:j1], model.tile[2])
        row_max = new_max
    out = torch.where(row_sum == 0, torch.zeros_like(acc), acc / row_sum)
    lse = torch.where(row_sum == 0, math.inf, row_max + torch.log(row_sum))
    return out, lse.squeeze(-1)


# ------------------------------------------------------------ serving attention
def _window_mask(model: DeviceModel, sq: int, sk: int, causal: bool, window):
    """The window as a mask of the kind the target takes, ``None`` without a window;
    causality stays with the target's causal flag."""
    from ...ops.varlen_attention.numerics import visible_keys

    if window == (-1, -1):
        return None
    visible = visible_keys(sq, sk, False, (window[0], -1 if causal else window[1]))
    if "bool" in model.mask_kinds:
        return visible
    return torch.zeros(sq, sk).masked_fill(~visible, -math.inf)


def _sequence(model, q, k, v, causal, scale, window):
    """One packed sequence (``q (Sq, Hq, D)``, ``k``/``v (Sk, Hkv, D)``) through the
    target's attention: ``(out (Sq, Hq, Dv), lse (Hq, Sq))``."""
    out, lse = attention_rows(model, q.transpose(0, 1)[None], k.transpose(0, 1)[None],
                              v.transpose(0, 1)[None],
                              _window_mask(model, q.shape[0], k.shape[0], causal, window),
                              causal, scale)
    return out[0].transpose(0, 1), lse[0]


def varlen_attention(model: DeviceModel, args) -> None:
    """``varlen_attention`` (:class:`hetero.ops.varlen_attention.VarlenAttentionArgs`):
    each sequence through the target's attention."""
    starts_q, starts_k = args.cu_seqlens_q.tolist(), args.cu_seqlens_k.tolist()
    args.out.zero_()
    if args.lse is not None:
        args.lse.fill_(math.inf)
    for b in range(len(starts_q) - 1):
        (q0, q1), (k0, k1) = starts_q[b:b + 2], starts_k[b:b + 2]
        if q1 > q0:
            out, lse = _sequence(model, args.q[q0:q1], args.k[k0:k1], args.v[k0:k1],
                                 args.causal, args.scale, args.window)
            args.out[q0:q1] = out
            if args.lse is not None:
                args.lse[:, q0:q1] = lse


def paged_attention(model: DeviceModel, args) -> None:
    """``paged_attention`` (:class:`hetero.ops.paged_attention.PagedAttentionArgs`):
    each sequence's pages read in table order, then the target's attention."""
    from ...ops.paged_attention.numerics import gather_sequence, query_starts

    starts = query_starts(args)
    args.out.zero_()
    for b, length in enumerate(args.seq_lens.tolist()):
        q0, q1 = starts[b], starts[b + 1]
        if q1 > q0:
            k = gather_sequence(args.k_cache, args.block_table, b, length)
            v = gather_sequence(args.v_cache, args.block_table, b, length)
            args.out[q0:q1] = _sequence(model, args.q[q0:q1], k, v, args.causal, args.scale,
                                        args.window)[0]
