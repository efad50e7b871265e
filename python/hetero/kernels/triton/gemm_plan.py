"""Planning launches of the GEMM kernel (``gemm.py``): batch dims merged or folded into
M, the TMA view of each operand, the launch arguments and autotuning keys (worked out
once per call signature), and :data:`TUNING`, what the launcher (``launch.py``) needs to
pick a config: the tables of ``gemm_configs.py``, pruned per call by
:func:`~.gemm_configs.configs_for`.
"""

from __future__ import annotations

import functools
import itertools
from typing import NamedTuple

import torch

from . import gpu_platform, interpreting, next_pow2
from .gemm_configs import (AUTOTUNE_MIN_WORK, INTERPRETER_CONFIGS, SAFE_CONFIG, TileConfig,
                           configs_for, first_tma_config, platform_configs)
from .launch import Tuning, device_limits

_INT32_LIMIT = 2**31  # in-tile offsets at or beyond this switch the kernel to int64
_LOW_PRECISION = (torch.float16, torch.bfloat16)
_INTERPRETER_PROGRAMS = 3  # persistent programs under the interpreter (tests)


# -- Planning a launch: once per (shapes, strides, dtypes, alignment) ---------------------

class Launch(NamedTuple):
    """Everything about one kernel launch except the operand pointers and alpha/beta."""

    args: tuple  # BATCH, M, N, K, the 12 strides
    keys: tuple  # M_KEY, N_KEY, K_KEY, B_KEY, LAYOUT_KEY
    meta: dict  # constexprs that are not tuned
    grid: object  # META -> grid
    config: TileConfig | None  # a fixed config, or None: the launcher picks one
    tune: bool  # worth autotuning (else the first fitting config runs)
    tma: bool  # TMA configs may run (needs the descriptor allocator)


def plan(a, b, bias, out, allow_tf32, tma, config) -> Launch | None:
    """The single launch that computes the whole call, or None when the batch dims do
    not merge into one (the caller then launches once per :func:`problems` element)."""
    (a3, b3, c3, o3), *more = problems(a, b, bias, out)
    return None if more else make_launch(a3, b3, c3, o3, allow_tf32, tma, config)


def make_launch(a, b, bias, out, allow_tf32, tma, config) -> Launch:
    """Plan one launch over 3-D views ``a (B, M, K)``, ``b (B, K, N)``, ``out`` (and
    ``bias``) ``(B, M, N)``."""
    batch, M, K = a.shape
    N = b.shape[2]
    interp = interpreting()
    platform = "interpreter" if interp else gpu_platform()
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
              and (interp or device_limits(a.device.index)[2]))
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
    num_sms = _INTERPRETER_PROGRAMS if interp else device_limits(a.device.index)[1]

    def grid(META):
        tiles = batch * -(-M // META["BLOCK_M"]) * -(-N // META["BLOCK_N"])
        return (min(tiles, num_sms) if META["PERSISTENT"] else tiles,)

    return Launch(
        args=(batch, M, N, K, *sa, *sb,
              *(bias.stride() if bias is not None else (0, 0, 0)), *out.stride()),
        keys=(_bucket(M), _bucket(N), _bucket(K), _bucket(batch),
              layout_code(a, 2) + 4 * layout_code(b, 1) + 16 * tma_mode),
        meta=meta, grid=grid, config=config, tune=batch * M * N * K > AUTOTUNE_MIN_WORK,
        tma=tma_mode > 0)


# -- Picking a config: what the launcher needs --------------------------------------------

def fitting(table, args) -> list[TileConfig]:
    """The configs of ``table`` worth trying for a live call (``args``: the kernel's
    arguments by name): :func:`configs_for` on its sizes, dtype and device, TMA configs
    only where the call requires TMA."""
    a = args["a_ptr"]
    smem, sms, _ = device_limits(a.device.index)
    tma_mode = args["LAYOUT_KEY"] // 16  # 0: pointers only, 1: either, 2: TMA only
    allowed = configs_for(args["M"], args["N"], args["K"], a.dtype, platform=gpu_platform(),
                          tma=tma_mode > 0, exact_fp32=args.get("DOT_PRECISION") == "ieee",
                          max_shared_mem=smem, num_sms=sms, batch=args["BATCH"])
    if tma_mode == 2:
        allowed = [c for c in allowed if c.tma] or [first_tma_config(gpu_platform())]
    allowed = set(allowed)
    return [c for c in table if c in allowed]


def pick(configs, args) -> TileConfig:
    """Untuned (small problems, the interpreter): the first config, loading through
    pointers unless the call requires TMA (no descriptor set-up to amortise)."""
    tma_required = args["LAYOUT_KEY"] // 16 == 2
    return next((c for c in configs if c.tma == tma_required), configs[0])


def masks(config: TileConfig, args: tuple) -> dict:
    """The kernel's ``MASK_*`` heuristics (ragged edges) for a fixed config; ``args``:
    the launch's positional arguments (a, b, bias, out, BATCH, M, N, K, ...)."""
    M, N, K = args[5:8]
    return {"MASK_M": M % config.block_m != 0, "MASK_N": N % config.block_n != 0,
            "MASK_K": K % config.block_k != 0}


TUNING = Tuning(
    name="gemm", tables={p: platform_configs(p) for p in ("cuda", "hip")},
    interpreter=INTERPRETER_CONFIGS,
    keys=("M_KEY", "N_KEY", "K_KEY", "B_KEY", "LAYOUT_KEY", "HAS_BIAS", "DOT_PRECISION"),
    prune=fitting, pick=pick, never_fatal=True, safe=SAFE_CONFIG, heuristics=masks)


# -- Batch dims ---------------------------------------------------------------------------

def problems(a, b, bias, out) -> list[tuple]:
    """The call as 3-D GEMMs ``(a (B, M, K), b (B, K, N), bias, out (B, M, N))``, views
    of the operands: one where the batch dims merge (B folded into M where ``b`` is
    shared), else one per element of the leading batch dims."""
    operands = [a, b, out] + ([bias] if bias is not None else [])
    dims = batch_dims(out.shape[:-2], operands)
    views = [batched_view(t, dims, i) for i, t in enumerate(operands)]
    found = []
    for index in itertools.product(*(range(size) for size, _ in dims[:-1])):
        a3, b3, o3, *c3 = (v[index] for v in views)
        c3 = c3[0] if c3 else None
        found.append(fold_batch_into_m(a3, b3, c3, o3) or (a3, b3, c3, o3))
    return found


def batch_dims(batch_shape, tensors) -> list[tuple[int, list[int]]]:
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


def batched_view(t: torch.Tensor, dims, i: int) -> torch.Tensor:
    """``t``, the ``i``-th tensor given to :func:`batch_dims`, as
    ``(*merged batch dims, rows, cols)`` (``(1, rows, cols)`` without any), no copy."""
    sizes = [size for size, _ in dims] or [1]
    strides = [st[i] for _, st in dims] or [0]
    return t.as_strided(sizes + list(t.shape[-2:]), strides + list(t.stride()[-2:]),
                        t.storage_offset())


def fold_batch_into_m(a, b, bias, out):
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


# -- Operands and the device --------------------------------------------------------------

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
    return max(16, next_pow2(x)) if x <= 1024 else -(-x // 512) * 512


@functools.lru_cache(maxsize=None)
def _hip_has_tf32(device) -> bool:
    """TF32 dot on AMD: only CDNA3 (gfx942) in Triton 3.x."""
    try:
        return "gfx942" in torch.cuda.get_device_properties(device).gcnArchName
    except Exception:
        return False

