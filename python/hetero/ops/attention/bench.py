"""attention in the benchmark: its cases — ``(B, Hq, Sq, D)`` queries over ``(B, Hkv,
Sk, D)`` keys and values — in the ``llm`` and ``square`` suites, shape-file entries, and
the work of one case: PyTorch's SDPA as the baseline (with hetero's bottom-right
``causal``), and the result checked on the first and last batch element and head, all
of their rows, by the FlashAttention rule against SDPA in the same dtype (with a
K-aware floor for float32).

FLOPs ``4·B·Hq·D·pairs`` with ``pairs`` the (query, key) pairs a query may see:
``Sq·Sk``, or for causal about half of it when ``Sq == Sk`` and all of it for a decode
step (``Sq == 1``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ... import tuned
from ...bench.suites import MODELS, Sizes
from ...bench.work import TORCH, BenchSpec, Inputs, Work, positive
from .._checks import compute_dtype
from .api import prepare
from .numerics import attention_error_bound, attention_flops, reference_attention


@dataclass(frozen=True)
class AttentionCase:
    """``q (b, hq, sq, d)``, ``k``/``v (b, hkv, sk, d)``."""

    b: int
    hq: int
    hkv: int
    sq: int
    sk: int
    d: int
    causal: bool = False
    name: str = ""
    op: ClassVar[str] = "attention"

    @property
    def shape(self) -> str:
        gqa = f"/{self.hkv}" if self.hkv != self.hq else ""
        seq = f"S={self.sq}" if self.sq == self.sk else f"Sq={self.sq} Sk={self.sk}"
        return (f"B={self.b} H={self.hq}{gqa} {seq} D={self.d}"
                f"{' causal' if self.causal else ''}")

    @property
    def label(self) -> str:
        return f"{self.name + ' ' if self.name else ''}{self.shape}"

    @property
    def flops(self) -> float:
        return attention_flops(self.b * self.hq, self.sq, self.sk, self.d, self.d, self.causal)

    def min_bytes(self, element_size: int) -> float:
        return element_size * self.b * self.d * (2 * self.hq * self.sq + 2 * self.hkv * self.sk)

    @property
    def bucket(self) -> tuple[int, ...]:
        return tuned.bucket(self.b * self.hq, self.sq, self.sk, self.d)

    def key(self) -> tuple:
        return (self.op, self.b, self.hq, self.hkv, self.sq, self.sk, self.d, self.causal)


def llm(s: Sizes) -> list[AttentionCase]:
    """Each model's prefill (causal over ``s.tokens``) and decode step (``s.batch``
    sequences, one query against ``s.context`` cached keys)."""
    cases = []
    for model in MODELS[:s.models]:
        cases.append(AttentionCase(1, model.heads, model.kv_heads, s.tokens, s.tokens,
                                   model.head_dim, True, f"{model.name} prefill"))
        cases.append(AttentionCase(s.batch, model.heads, model.kv_heads, 1, s.context,
                                   model.head_dim, True, f"{model.name} decode"))
    return cases


def square(s: Sizes) -> list[AttentionCase]:
    """Attention over ``S`` tokens, plain and causal (batched up to ``s.square_tokens``
    tokens)."""
    return [AttentionCase(max(1, s.square_tokens // seq), s.heads, s.heads, seq, seq, 128,
                          causal, "square")
            for seq in s.seqs for causal in (False, True)]


def case_from(item: dict) -> AttentionCase:
    """``{hq, sq, d[, b, hkv, sk, causal, name]}``: b 1, hkv = hq, sk = sq, not causal
    by default."""
    fields = {"b", "hq", "hkv", "sq", "sk", "d", "causal", "name"}
    if not set(item) <= fields:
        raise ValueError(f"unexpected {sorted(set(item) - fields)!r} (fields: {sorted(fields)})")
    hq = positive(item, "hq")
    hkv = positive(item, "hkv", hq)
    if hq % hkv:
        raise ValueError(f"hkv {hkv} must divide hq {hq}")
    causal = item.get("causal", False)
    if not isinstance(causal, bool):
        raise ValueError(f"causal must be true or false, got {causal!r}")
    sq = positive(item, "sq")
    return AttentionCase(positive(item, "b", 1), hq, hkv, sq, positive(item, "sk", sq),
                         positive(item, "d"), causal, str(item.get("name", "")))


def torch_attention(q, k, v, causal: bool):
    """PyTorch's SDPA with hetero's meaning of ``causal`` (bottom-right aligned; PyTorch's
    ``is_causal`` is top-left when Sq != Sk) and GQA."""
    sq, sk = q.shape[2], k.shape[2]
    mask = None
    if causal and sq != sk:
        visible = torch.ones(sq, sk, dtype=torch.bool, device=q.device).tril(sk - sq)
        mask = None if bool(visible.all()) else visible
    is_causal = causal and sq == sk
    gqa = q.shape[1] != k.shape[1]
    return lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                                  enable_gqa=gqa)


def work(case: AttentionCase, dtype: torch.dtype, device: torch.device,
         inputs: Inputs) -> Work:
    q = inputs.get((case.b, case.hq, case.sq, case.d), 1).to(device, dtype)
    k = inputs.get((case.b, case.hkv, case.sk, case.d), 2).to(device, dtype)
    v = inputs.get((case.b, case.hkv, case.sk, case.d), 3).to(device, dtype)
    batches, heads = sorted({0, case.b - 1}), sorted({0, case.hq - 1})
    kv_heads = [h // (case.hq // case.hkv) for h in heads]

    def pick(t, h=heads):
        return t[batches][:, h]

    qs, ks, vs = pick(q), pick(k, kv_heads), pick(v, kv_heads)
    reference = reference_attention(qs, ks, vs, causal=case.causal)
    baseline = torch_attention(qs, ks, vs, case.causal)()
    sdpa = torch_attention(q, k, v, case.causal)
    return Work((q, k, v), {"causal": case.causal}, lambda out=None: sdpa(), pick, reference,
                attention_error_bound(reference, baseline, case.d, case.sk))


def case_of(args) -> AttentionCase | None:
    """The case that measures a call like ``args`` (an
    :class:`~.api.AttentionArgs`; its mask is left out), or ``None`` where the cases
    cannot say it (``Dv != D``, empty)."""
    (b, hq, sq, d), (hkv, sk) = args.q.shape, args.k.shape[1:3]
    if args.v.shape[3] != d or 0 in (b, hq, sq, sk, d):
        return None
    return AttentionCase(b, hq, hkv, sq, sk, d, args.causal, "calibration")


def training_step(case: AttentionCase, dtype: torch.dtype, device: torch.device,
                  inputs: Inputs, kernel):
    """``step()``: the case's forward and backward on ``kernel`` — one with a backward of
    its own (forward filling the log-sum-exp, then the backward), or the ``torch``
    backend's (SDPA, then its autograd backward)."""
    q = inputs.get((case.b, case.hq, case.sq, case.d), 1).to(device, dtype)
    k = inputs.get((case.b, case.hkv, case.sk, case.d), 2).to(device, dtype)
    v = inputs.get((case.b, case.hkv, case.sk, case.d), 3).to(device, dtype)
    dout = inputs.get((case.b, case.hq, case.sq, case.d), 4).to(device, dtype)
    if kernel.backend == TORCH:
        leaves = [t.detach().requires_grad_() for t in (q, k, v)]
        sdpa = torch_attention(*leaves, case.causal)

        def torch_step():
            with torch.enable_grad():  # calibration may run where autograd is off
                return torch.autograd.grad(sdpa(), leaves, dout)

        return torch_step
    args = prepare(q, k, v, case.causal, None, None, None, kernel.backend)[1]

    def step():
        record = args._replace(out=torch.empty_like(args.out), lse=torch.empty(
            q.shape[:3], dtype=compute_dtype(dtype), device=device))
        kernel.fn(record)
        return kernel.backward(record, dout)

    return step


SPEC = BenchSpec({"llm": llm, "square": square}, case_from, work,
                 "4·B·Hq·D·pairs; pairs = Sq·Sk, or the (query, key) pairs a query may see "
                 "when causal (bottom-right aligned): about half for Sq = Sk", case_of,
                 training_step)
