"""The common cases of :func:`hetero.gemm`, :func:`hetero.scaled_gemm`,
:func:`hetero.attention`, :func:`hetero.paged_attention` and :func:`hetero.write_kv_cache`
served natively, whether or not anything is enabled.

Each public function first calls its entry op (``hetero_route::gemm``, ``::scaled_gemm``,
``::attention``, ``::paged_attention``, ``::write_kv_cache``;
``csrc/route/gemm_route.cpp``, ``scaled_route.cpp``, ``attention_route.cpp``,
``paged_route.cpp``), which looks the call up in the native route's decision cache
(:mod:`hetero.native_route`) and runs the ``cpu`` backend's kernel (or, for gemm and a
decode step's attention, PyTorch's) without Python. It returns ``None`` (the cache write:
``False``) for any call it leaves to the function's Python path: another shape, dtype,
device or recipe, bad input, keyword arguments, or a decision for another kernel. A
miss asks hetero's dispatcher here, on the real tensors, as the Python path would
(:func:`_decide_gemm_call`, ...); these calls are not counted, as the public functions'
calls are not.
"""

from __future__ import annotations

import torch

from . import dispatch, torch_ops
from .backends.pytorch import NAME as TORCH_BACKEND
from .native_route import (NATIVE, PYTHON, TORCH, _bucket_wide, _decide_entry, _define_ops,
                           _env_threads, _native, _NO_COUNTER, _slot, unavailable)
from .ops import registry as op_registry

_library = None  # the entry ops' definitions, made on first use


def gemm_entry():
    """``hetero_route::gemm(a, b)`` where the native route can run, else ``None``:
    :func:`hetero.gemm`'s common case (two CPU matrices, no bias, ``alpha = beta = 1``,
    no ``out``, no ``backend``). Called once at import, so every later ``hetero.use``
    scope reaches the native cache."""
    return _entry("gemm")


def gemm_op_entry():
    """``hetero_route::gemm_op(a, b)`` where the native route can run, else ``None``:
    :func:`gemm_entry` for the CPU kernel of ``torch.ops.hetero.gemm``, whose calls are
    counted in :func:`hetero.stats` as that op's Python kernel counts them."""
    return _entry("gemm_op")


def scaled_gemm_entry():
    """``hetero_route::scaled_gemm(a, b, scale_a, scale_b)`` where the native route can
    run, else ``None``: :func:`hetero.scaled_gemm`'s common case (two CPU matrices of one
    float8 or int8 dtype, float32 tensor-wise or row-wise scales, no bias, the default
    bfloat16 out, no ``out``, no ``backend``; or int8 without scales into int32, as
    ``torch._int_mm``)."""
    return _entry("scaled_gemm")


def attention_entry():
    """``hetero_route::attention(q, k, v, causal, scale, attn_mask)`` where the native
    route can run, else ``None``: :func:`hetero.attention` without ``out`` or
    ``backend``, on CPU tensors (``scale`` a float or ``None``), checked natively as the
    Python path checks it."""
    return _entry("attention")


def attention_op_entry():
    """``hetero_route::attention_op(q, k, v, causal, scale, attn_mask) -> (out, lse)``
    where the native route can run, else ``None``: :func:`attention_entry` for the CPU
    kernel of ``torch.ops.hetero.attention_forward`` (``cpu.flash`` only, which fills the
    log-sum-exp its backward takes), counted in :func:`hetero.stats`; ``(None, None)`` for
    a call it leaves to that op's Python kernel."""
    return _entry("attention_op")


def paged_attention_entry():
    """``hetero_route::paged_attention(q, k_cache, v_cache, block_table, seq_lens, scale,
    causal, window_left, window_right, softcap)`` where the native route can run, else
    ``None``: :func:`hetero.paged_attention`'s decode step (one query per sequence, CPU
    tensors, no ``cu_seqlens_q``, no ``out``, no ``backend``; ``scale`` given as a float),
    checked natively as the Python path checks it."""
    return _entry("paged_attention")


def write_kv_cache_entry():
    """``hetero_route::write_kv_cache(k, v, k_cache, v_cache, slot_mapping) -> bool``
    where the native route can run, else ``None``: :func:`hetero.write_kv_cache` on CPU
    tensors of a float dtype, checked natively as the Python path checks it; ``False``
    for a call it leaves to that path."""
    return _entry("write_kv_cache")


_PAGED_ARGS = ("Tensor q, Tensor k_cache, Tensor v_cache, Tensor block_table, Tensor seq_lens, "
               "float scale, bool causal, int window_left, int window_right, float softcap")


def _entry(name: str):
    """The bound C++ function of the entry op ``hetero_route::<name>`` (no ``__call__``
    in Python), the entries defined and registered on first use."""
    global _library
    if unavailable() is not None:
        return None
    if _library is None:
        _define_ops()  # the namespace, with the route's own ops
        library = torch.library.Library("hetero_route", "FRAGMENT")
        library.define("gemm(Tensor a, Tensor b) -> Tensor")
        library.define("decide_gemm_call(Tensor a, Tensor b) -> int")
        library.define("gemm_op(Tensor a, Tensor b) -> Tensor")
        library.define("decide_gemm_op(Tensor a, Tensor b) -> int")
        library.define("scaled_gemm(Tensor a, Tensor b, Tensor? scale_a, Tensor? scale_b) "
                       "-> Tensor")
        library.define("decide_scaled_gemm_call(Tensor a, Tensor b, Tensor scale_a, "
                       "Tensor scale_b, bool scaled) -> int")
        library.define("attention(Tensor q, Tensor k, Tensor v, bool causal, float? scale, "
                       "Tensor? attn_mask) -> Tensor")
        library.define("decide_attention_call(Tensor q, Tensor k, Tensor v, Tensor mask, "
                       "bool has_mask, bool causal, float scale) -> int")
        library.define("attention_op(Tensor q, Tensor k, Tensor v, bool causal, float? scale, "
                       "Tensor? attn_mask) -> (Tensor, Tensor)")
        library.define("decide_attention_op(Tensor q, Tensor k, Tensor v, Tensor mask, "
                       "bool has_mask, bool causal, float scale) -> int")
        library.define(f"paged_attention({_PAGED_ARGS}) -> Tensor")
        library.define(f"decide_paged_attention_call({_PAGED_ARGS}) -> int")
        library.define("write_kv_cache(Tensor k, Tensor v, Tensor(a!) k_cache, "
                       "Tensor(b!) v_cache, Tensor slot_mapping) -> bool")
        library.impl("decide_gemm_call", _decide_gemm_call, "CPU")
        library.impl("decide_gemm_op", _decide_gemm_op, "CPU")
        library.impl("decide_scaled_gemm_call", _decide_scaled_gemm_call, "CPU")
        library.impl("decide_attention_call", _decide_attention_call, "CPU")
        library.impl("decide_attention_op", _decide_attention_op, "CPU")
        library.impl("decide_paged_attention_call", _decide_paged_attention_call, "CPU")
        _native.register_entry_calls()
        _native.set_num_threads(_env_threads())
        dispatch.cache_listeners.append(lambda: _native.set_num_threads(_env_threads()))
        _native.set_thread_scope(dispatch.scope_id(dispatch.current_scope.get()))
        _library = library
    overload = getattr(torch.ops.hetero_route, name).default
    return getattr(overload, "_op", overload)


_TORCH_SERVED = frozenset({"gemm", "attention"})  # entries that call PyTorch's kernel


def _dispatchs_decision(op: str, prepared: tuple, native_kernel: str,
                        counted: bool = False) -> int:
    """What the entry does with a call ``op``'s Python path would dispatch as
    ``prepare(*prepared)``: ``native_kernel`` runs natively, the ``torch`` backend as
    PyTorch's kernel (the entries of gemm and attention only), anything else, and a call
    dispatch refuses, takes the Python path (which raises what is wrong; that answer is
    kept for these sizes only). ``counted``: for a torch operator's kernel, decided as
    the operator decides (:func:`hetero.torch_ops.decide`; PyTorch's fallback is left
    to the Python kernel, which counts and warns about it), each call served counted."""
    try:
        key, record = op_registry.spec(op).prepare(*prepared)
        kernel = torch_ops.decide(key, record)[0] if counted else \
            dispatch.resolve_kernel(key, record)
    except Exception:  # noqa: BLE001 - the Python path raises it again, for the caller
        kernel = None
    action = PYTHON if kernel is None else NATIVE if kernel.qualname == native_kernel else \
        TORCH if op in _TORCH_SERVED and kernel.backend == TORCH_BACKEND else PYTHON
    counter = _slot(True, op, kernel.qualname) if counted and action != PYTHON else _NO_COUNTER
    return counter * 4 + action | (_bucket_wide(op) if kernel is not None else 0)


@_decide_entry
def _decide_gemm_call(a: torch.Tensor, b: torch.Tensor) -> int:
    """The decision for ``hetero.gemm(a, b)``: hetero.gemm's own dispatch (the reference
    backend its last resort, the tuned table's plain entries: what ``explain`` shows)."""
    return _dispatchs_decision("gemm", (a, b, None, 1.0, 1.0, None, None), "cpu.gemm")


@_decide_entry
def _decide_gemm_op(a: torch.Tensor, b: torch.Tensor) -> int:
    """The decision for ``torch.ops.hetero.gemm(a, b)``, with the counter its calls add
    to."""
    return _dispatchs_decision("gemm", (a, b, None, 1.0, 1.0, None, None), "cpu.gemm",
                               counted=True)


@_decide_entry
def _decide_scaled_gemm_call(a: torch.Tensor, b: torch.Tensor, scale_a: torch.Tensor,
                             scale_b: torch.Tensor, scaled: bool) -> int:
    """The decision for ``hetero.scaled_gemm(a, b, scale_a, scale_b)`` (``scaled``; else
    ``hetero.scaled_gemm(a, b, None, None, out_dtype=torch.int32)``, ``a`` standing in
    for the absent scales)."""
    if not scaled:
        scale_a = scale_b = None
    return _dispatchs_decision(
        "scaled_gemm", (a, b, scale_a, scale_b, None, None if scaled else torch.int32, None,
                        None), "cpu.scaled_gemm")


@_decide_entry
def _decide_attention_call(q, k, v, mask, has_mask: bool, causal: bool, scale: float) -> int:
    """The decision for ``hetero.attention(q, k, v, causal=causal, scale=scale,
    attn_mask=mask if has_mask else None)``; the entry has checked the call as its
    Python path would."""
    return _dispatchs_decision("attention", (q, k, v, causal, scale, mask if has_mask else None,
                                             None, None), "cpu.flash")


@_decide_entry
def _decide_attention_op(q, k, v, mask, has_mask: bool, causal: bool, scale: float) -> int:
    """The decision for ``torch.ops.hetero.attention_forward(q, k, v, mask if has_mask
    else None, causal, scale)``, with the counter its calls add to."""
    return _dispatchs_decision("attention", (q, k, v, causal, scale, mask if has_mask else None,
                                             None, None), "cpu.flash", counted=True)


@_decide_entry
def _decide_paged_attention_call(q, k_cache, v_cache, block_table, seq_lens, scale: float,
                                 causal: bool, window_left: int, window_right: int,
                                 softcap: float) -> int:
    """The decision for ``hetero.paged_attention(q, k_cache, v_cache, block_table,
    seq_lens, causal=causal, scale=scale, window=(window_left, window_right),
    softcap=softcap)``; the entry has checked the call as its Python path would."""
    return _dispatchs_decision(
        "paged_attention", (q, k_cache, v_cache, block_table, seq_lens, None, None, causal,
                            scale, (window_left, window_right), softcap, None, None),
        "cpu.paged")
