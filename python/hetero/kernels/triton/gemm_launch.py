"""Planning and running launches of the GEMM kernel (``gemm.py``): batch dims merged or
folded into M, the TMA view of each operand, the launch arguments and autotuning keys
(worked out once per call signature), and the run itself: one fixed config, or
``triton.autotune`` over the platform's table pruned by :func:`~.gemm_configs.configs_for`,
never fatal when a config fails.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import warnings
from typing import NamedTuple

import torch
import triton

from . import gpu_platform, interpreter_numpy_fix, interpreting, next_pow2
from .gemm_configs import (AUTOTUNE_MIN_WORK, INTERPRETER_CONFIG, SAFE_CONFIG, TileConfig,
                           configs_for, first_tma_config, platform_configs)

_INT32_LIMIT = 2**31  # in-tile offsets at or beyond this switch the kernel to int64
_LOW_PRECISION = (torch.float16, torch.bfloat16)
_KEYS = ["M_KEY", "N_KEY", "K_KEY", "B_KEY", "LAYOUT_KEY", "HAS_BIAS", "DOT_PRECISION"]
_INTERPRETER_PROGRAMS = 3  # persistent programs under the interpreter (tests)


# -- Planning a launch: once per (shapes, strides, dtypes, alignment) ---------------------

class Launch(NamedTuple):
    """Everything about one kernel launch except the operand pointers and alpha/beta."""

    args: tuple  # BATCH, M, N, K, the 12 strides
    keys: tuple  # M_KEY, N_KEY, K_KEY, B_KEY, LAYOUT_KEY
    meta: dict  # constexprs that are not tuned
    grid: object  # META -> grid
    config: TileConfig | None  # a fixed config, or None: autotune
    tma: bool  # TMA configs may run (needs the descriptor allocator)
    platform: str


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
              and (interp or _device_limits(a.device.index)[2]))
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
    num_sms = _INTERPRETER_PROGRAMS if interp else _device_limits(a.device.index)[1]

    def grid(META):
        tiles = batch * -(-M // META["BLOCK_M"]) * -(-N // META["BLOCK_N"])
        return (min(tiles, num_sms) if META["PERSISTENT"] else tiles,)

    if interp:
        config = config or INTERPRETER_CONFIG._replace(tma=tma_mode == 2)
    elif config is None and batch * M * N * K <= AUTOTUNE_MIN_WORK:
        smem, sms, _ = _device_limits(a.device.index)
        candidates = configs_for(M, N, K, a.dtype, platform=platform, tma=tma_mode > 0,
                                 exact_fp32=precision == "ieee", max_shared_mem=smem,
                                 num_sms=sms, batch=batch)
        # Not worth tuning: the first fitting config, pointer loads unless TMA is
        # required (no descriptor set-up to amortise).
        config = next((c for c in candidates if c.tma == (tma_mode == 2)), None) \
            or (first_tma_config(platform) if tma_mode == 2 else candidates[0])
    return Launch(
        args=(batch, M, N, K, *sa, *sb,
              *(bias.stride() if bias is not None else (0, 0, 0)), *out.stride()),
        keys=(_bucket(M), _bucket(N), _bucket(K), _bucket(batch),
              layout_code(a, 2) + 4 * layout_code(b, 1) + 16 * tma_mode),
        meta=meta, grid=grid, config=config, tma=tma_mode > 0, platform=platform)


# -- Running it ---------------------------------------------------------------------------

def run(kernel, launch: Launch, a, b, bias, out, alpha: float,
        beta: float) -> TileConfig | None:
    """Launch ``kernel`` (``gemm.py``'s, under its ``MASK_*`` heuristics; passed in since
    gemm.py imports this module) on the operands' data pointers. Returns the config that
    tuning chose (or fell back to), None if the launch had one already."""
    args = (a, b, out if bias is None else bias, out, *launch.args, alpha, beta,
            *launch.keys)
    config, grid, meta = launch.config, launch.grid, launch.meta
    if launch.platform == "interpreter":
        interpreter_numpy_fix()
        kernel[grid](*args, **meta, **config.meta())
        return None
    index = a.device.index
    with torch.cuda.device(index) if index != torch.cuda.current_device() else _NO_CONTEXT:
        if launch.tma:
            _ensure_tma_allocator()
        if config is not None:
            # The JIT function itself: the MASK_* heuristics and the autotuner's
            # bookkeeping would cost more than the launch.
            kernel.fn[grid](*args, **meta, **_masks(launch, config), **config.meta(),
                            **config.launch_options())
            return None
        tuner = _autotuned(kernel, launch.platform)
        try:
            tuner[grid](*args, **meta)
            return _TILE_OF[id(tuner.best_config)]
        except Exception as exc:  # a config that does not build or run: never fatal
            warnings.warn(f"hetero triton gemm: tuning failed ({type(exc).__name__}: "
                          f"{str(exc)[:200]}); running the fallback config {SAFE_CONFIG}",
                          RuntimeWarning, stacklevel=3)
            safe = SAFE_CONFIG
            kernel.fn[grid](*args, **meta, **_masks(launch, safe), **safe.meta(),
                            **safe.launch_options())
            return safe


def _masks(launch: Launch, config: TileConfig) -> dict:
    """The ``MASK_*`` constexprs (what the kernel's heuristics compute) for a config."""
    _, M, N, K = launch.args[:4]
    return {"MASK_M": M % config.block_m != 0, "MASK_N": N % config.block_n != 0,
            "MASK_K": K % config.block_k != 0}


_NO_CONTEXT = contextlib.nullcontext()


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


# -- Operand layouts ----------------------------------------------------------------------

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


# -- Autotuning ---------------------------------------------------------------------------

_TILE_OF: dict[int, TileConfig] = {}  # id(triton.Config) -> the TileConfig it came from


@functools.lru_cache(maxsize=None)
def _autotuned(kernel, platform: str):
    """``kernel`` under triton.autotune with this platform's configs (built lazily)."""
    configs = []
    for tile in platform_configs(platform):
        configs.append(tile.to_triton())
        _TILE_OF[id(configs[-1])] = tile
    tuner = triton.autotune(configs=configs, key=_KEYS,
                            prune_configs_by={"early_config_prune": _prune})(kernel)
    bench = tuner._bench

    def robust_bench(*args, config, **meta):
        # Triton skips configs that run out of resources; one that fails any other way
        # (a compiler error on some tile shape) is skipped too, instead of ending tuning.
        try:
            return bench(*args, config=config, **meta)
        except Exception as exc:
            warnings.warn(f"hetero triton gemm: config {_TILE_OF[id(config)]} failed "
                          f"while tuning ({type(exc).__name__}: {str(exc)[:200]})",
                          RuntimeWarning, stacklevel=2)
            return [float("inf")] * 3

    tuner._bench = robust_bench
    return tuner


def _prune(configs, named_args, **kwargs):
    """``early_config_prune`` for triton.autotune: :func:`configs_for` on the live call."""
    a = named_args["a_ptr"]
    smem, sms, _ = _device_limits(a.device.index)
    tma_mode = named_args["LAYOUT_KEY"] // 16  # 0: pointers only, 1: either, 2: TMA only
    allowed = configs_for(named_args["M"], named_args["N"], named_args["K"], a.dtype,
                          platform=gpu_platform(), tma=tma_mode > 0,
                          exact_fp32=kwargs.get("DOT_PRECISION") == "ieee",
                          max_shared_mem=smem, num_sms=sms, batch=named_args["BATCH"])
    if tma_mode == 2:
        allowed = [c for c in allowed if c.tma] or [first_tma_config(gpu_platform())]
    allowed = set(allowed)
    return [c for c in configs if _TILE_OF[id(c)] in allowed]


# -- The device ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _device_limits(index: int) -> tuple[int | None, int | None, bool]:
    """(max shared memory per block, SM count, TMA available) of a GPU."""
    smem = sms = None
    try:
        props = triton.runtime.driver.active.utils.get_device_properties(index)
        smem, sms = props.get("max_shared_mem"), props.get("multiprocessor_count")
    except Exception:  # unknown: no shared-memory or occupancy pruning
        pass
    if not sms:
        sms = torch.cuda.get_device_properties(index).multi_processor_count
    tma = gpu_platform() == "cuda" and torch.cuda.get_device_capability(index) >= (9, 0)
    return smem, sms, tma


@functools.lru_cache(maxsize=None)
def _hip_has_tf32(device) -> bool:
    """TF32 dot on AMD: only CDNA3 (gfx942) in Triton 3.x."""
    try:
        return "gfx942" in torch.cuda.get_device_properties(device).gcnArchName
    except Exception:
        return False


def _ensure_tma_allocator() -> None:
    """Device-side TMA descriptors live in a per-launch global scratch buffer that Triton
    gets from the allocator set with ``triton.set_allocator``; set one if nobody has."""
    try:
        from triton.runtime import _allocation

        unset = isinstance(_allocation._allocator.get(), _allocation.NullAllocator)
    except (ImportError, AttributeError):  # another triton layout: assume unset
        unset = True
    if unset:
        triton.set_allocator(_torch_allocator)


def _torch_allocator(size: int, alignment: int, stream):
    return torch.empty(size, dtype=torch.int8, device="cuda")
