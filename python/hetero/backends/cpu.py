"""The native CPU backend: kernels from ``hetero._C`` (``backends/cpu/`` in C++).

GEMM: packed panels and a micro-kernel from the kernel set chosen at run time from the
CPU's features (``amx``, ``avx512``, ``avx2``, ``portable``; ``HETERO_CPU_ISA`` forces a
lower one). bf16 x bf16 on ``avx512`` with AVX512_BF16 multiplies bf16 pairs
(``vdpbf16ps``, twice the fp32 rate; subnormals read as zero, as in PyTorch's oneDNN), on
``amx`` (AMX-BF16) 32 x 32 tiles of C on AMX tile products (``tdpbf16ps``); otherwise
bf16/fp16 are widened while packing and run at fp32 speed. bf16 ``x @ w.t()`` of 20-512
rows on ``avx512`` (3-128 on ``amx``) reads the weight where it lies, unpacked, against x
packed once. ``amx`` is ``avx512`` with those GEMMs, bf16 flash attention and bf16 paged
attention on tiles.
Attention: flash attention forward and backward with float32 accumulation; the forward
on bf16 uses the same bf16 pair products where the kernel set has them.
Scaled GEMM (fp8, int8): every value decoded exactly to bf16 through a table and
multiplied as bf16; where the set has AVX512_BF16, _VBMI and _VNNI, decode-shaped calls
(M <= 16, ``b = w.t()``) stream the byte-coded weight, decoding in registers, larger
ones decode while packing, and int8 runs on ``vpdpbusd`` (20-512 rows of ``x @ w.t()``
streaming the weight; on ``amx``, 3-128 rows on AMX-INT8 tiles); on ``avx2``, calls of up to 32 rows stream the weight
too (fp8 widened through binary16, int8 by ``vpmaddwd``); int8 sums are exact (int32).
Serving attention: ``varlen_attention`` runs each packed sequence on the attention
forward's flash or decode path (window and softcap in its mask); ``paged_attention``
multiplies straight from the pages with the decode path's small-M products, splitting
a sequence's keys across threads when there are few (sequence, key/value head) items.
All run on ``num_threads()`` threads.

The Python side only turns tensors into ``(data_ptr, dtype code, sizes, strides)``
views; the C++ launchers validate them again and never see torch.
"""

from __future__ import annotations

import warnings

import torch

from .. import env
from ..errors import HeteroConfigWarning
from ..kernel import Kernel, Support
from ..ops.attention.api import FEATURES as ATTENTION_FEATURES
from ..ops.attention.api import head_dims
from ..ops.gemm.api import FEATURES as GEMM_FEATURES
from ..ops.paged_attention.api import FEATURES as PAGED_FEATURES
from ..ops.scaled_gemm.api import FEATURES as SCALED_GEMM_FEATURES
from ..ops.scaled_gemm.api import INPUT_DTYPES as SCALED_GEMM_DTYPES
from ..ops.varlen_attention.api import FEATURES as VARLEN_FEATURES
from .base import Backend
from .views import optional_view as _optional
from .views import view

try:
    from .. import _C
    _IMPORT_ERROR = None
except ImportError as exc:  # reported by probe(), never fatal
    _C, _IMPORT_ERROR = None, exc


_DTYPES = frozenset({torch.float32, torch.float16, torch.bfloat16})


def num_threads() -> int:
    """Threads the native kernels use: ``HETERO_NUM_THREADS`` if set, else
    ``torch.get_num_threads()`` (read at every call, so ``torch.set_num_threads``
    applies at once)."""
    return env.settings().num_threads or torch.get_num_threads()


def _select_isa(isa: str) -> None:
    """Run kernel set ``isa`` (``HETERO_CPU_ISA``); one this CPU cannot run is reported
    and the best one runs."""
    try:
        _C.set_cpu_isa(isa)
    except ValueError as exc:
        _C.set_cpu_isa("auto")
        warnings.warn(f"HETERO_CPU_ISA: {exc}; running {_C.cpu_isa()}", HeteroConfigWarning,
                      stacklevel=2)


def _gemm(args):
    _C.gemm(view(args.a), view(args.b), view(args.out), _optional(args.bias), args.alpha,
            args.beta, num_threads())


_RECIPES = {"tensor": 0, "row": 1, "block": 2}


def _scaled_gemm(args):
    unscaled = args.out.dtype is torch.int32  # int8 without scales (torch._int_mm)
    _C.scaled_gemm(view(args.a), view(args.b), None if unscaled else view(args.scale_a),
                   None if unscaled else view(args.scale_b), _RECIPES[args.recipe],
                   _optional(args.bias), view(args.out), num_threads())


def attention_forward(q, k, v, mask, causal: bool, scale: float, out) -> torch.Tensor:
    """Flash attention into ``out``; returns the ``(B, Hq, Sq)`` float32 natural-log
    log-sum-exp of each row's scores (``+inf`` for rows that see no key).

    ``q (B, Hq, Sq, D)``, ``k (B, Hkv, Sk, D)``, ``v (B, Hkv, Sk, Dv)``, ``out (B, Hq, Sq,
    Dv)``: one dtype (float32/float16/bfloat16), any strides; ``mask`` None or expanded
    to ``(B, Hq, Sq, Sk)``, bool or additive; ``causal`` bottom-right aligned."""
    lse = torch.empty(q.shape[:3], dtype=torch.float32)
    _C.attention_forward(view(q), view(k), view(v), _optional(mask), causal, scale, view(out),
                         view(lse), num_threads())
    return lse


def attention_backward(dout, q, k, v, out, lse, mask, causal: bool, scale: float):
    """``(dq, dk, dv)`` of :func:`attention_forward` from its ``out`` and ``lse``
    (the same arguments as the forward; ``dout`` shaped like ``out``)."""
    dq, dk, dv = (torch.empty_like(t) for t in (q, k, v))  # in the inputs' layouts
    _C.attention_backward(view(dout), view(q), view(k), view(v), view(out), view(lse),
                          _optional(mask), causal, scale, view(dq), view(dk), view(dv),
                          num_threads())
    return dq, dk, dv


def _attention(args):
    """The flash forward; fills ``args.lse`` when given (for the backward)."""
    _C.attention_forward(view(args.q), view(args.k), view(args.v), _optional(args.mask),
                         args.causal, args.scale, view(args.out), _optional(args.lse),
                         num_threads())


def _attention_backward(args, dout):
    return attention_backward(dout, args.q, args.k, args.v, args.out, args.lse, args.mask,
                              args.causal, args.scale)


def _varlen_attention(args):
    """Each sequence on the flash or decode path, the window and softcap in its mask;
    the log-sum-exp, when asked, as ``(Hq, Tq)``."""
    _C.varlen_attention(view(args.q), view(args.k), view(args.v), view(args.cu_seqlens_q),
                        view(args.cu_seqlens_k), args.scale, args.causal, *args.window,
                        args.softcap, view(args.out), _optional(args.lse), num_threads())


def _paged_attention(args):
    """Small-M products straight from the pages; keys split over threads (flash-decoding)
    when there are few (sequence, key/value head) items."""
    k_cache, v_cache = (c if c.stride(-1) == 1 else c.contiguous()
                        for c in (args.k_cache, args.v_cache))  # rows read as vectors
    _C.paged_attention(view(args.q), view(k_cache), view(v_cache),
                       view(args.block_table), view(args.seq_lens), _optional(args.cu_seqlens_q),
                       args.scale, args.causal, *args.window, args.softcap, view(args.out),
                       num_threads())


class CpuBackend(Backend):
    name = "cpu"
    api_version = "2.0"
    device_type = "cpu"
    priority = 100
    description = "native C++ kernels (hetero._C)"

    def probe(self):
        if _IMPORT_ERROR is not None:
            return [f"native module hetero._C is not built or failed to import: "
                    f"{_IMPORT_ERROR}"]
        _select_isa(env.settings().cpu_isa or "auto")
        return []

    @property
    def details(self) -> dict:
        if _C is None:
            return {}
        details = {"kernel set": f"{_C.cpu_isa()} (this CPU and build run {_C.cpu_isas()}; "
                                 f"HETERO_CPU_ISA picks one)"}
        if _C.cpu_amx_attention():
            details["paged attention"] = ("bf16 with 8+ query rows per key/value head on AMX "
                                          "tiles (AMX-BF16), the rest on AVX-512 vectors")
        elif _C.cpu_vector_paged_attention():
            details["paged attention"] = "AVX-512 vectors, all key/value heads of a page row at once"
        return details

    def kernels(self):
        return (
            Kernel("gemm", "gemm", _gemm, Support(
                dtypes=_DTYPES,
                device_types=frozenset({"cpu"}),
                features=frozenset(GEMM_FEATURES))),
            Kernel("attention", "flash", _attention, Support(
                dtypes=_DTYPES, device_types=frozenset({"cpu"}),
                features=frozenset(ATTENTION_FEATURES),
                limits=head_dims(1, 256)),
                backward=_attention_backward),
            Kernel("scaled_gemm", "scaled_gemm", _scaled_gemm, Support(
                dtypes=frozenset(SCALED_GEMM_DTYPES), device_types=frozenset({"cpu"}),
                features=frozenset(SCALED_GEMM_FEATURES))),
            Kernel("varlen_attention", "flash", _varlen_attention, Support(
                dtypes=_DTYPES, device_types=frozenset({"cpu"}),
                features=frozenset(VARLEN_FEATURES), limits=head_dims(1, 256))),
            Kernel("paged_attention", "paged", _paged_attention, Support(
                dtypes=_DTYPES, device_types=frozenset({"cpu"}),
                features=frozenset(PAGED_FEATURES), limits=head_dims(1, 256))),
        )


backend = CpuBackend()
