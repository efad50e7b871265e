"""The GEMM kernel's tuning configs, as data, and :func:`configs_for`, which picks the
ones worth trying for one problem (``gemm.py`` holds the kernel, ``gemm_plan.py`` plans
a call and hands these to the launcher, ``launch.py``, which times them)."""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch

from . import next_pow2


class TileConfig(NamedTuple):
    """One point of the tuning space (a :class:`~.launch.Config`): output tiles of
    ``BLOCK_M x BLOCK_N``, K steps of ``BLOCK_K``, ``GROUP_M`` tile-rows per group.
    ``tma``: load operand tiles through TMA tensor descriptors (sm90+ only).
    ``persistent``: one program per SM looping over tiles (else one program per tile).
    ``options``: extra backend compile options as ``(name, value)`` pairs (AMD:
    ``waves_per_eu``, ``matrix_instr_nonkdim``)."""

    block_m: int
    block_n: int
    block_k: int
    group_m: int
    num_warps: int
    num_stages: int
    tma: bool = False
    persistent: bool = False
    options: tuple = ()

    def meta(self) -> dict:
        """The kernel's tuned meta-parameters (constexprs)."""
        return {"BLOCK_M": self.block_m, "BLOCK_N": self.block_n, "BLOCK_K": self.block_k,
                "GROUP_M": self.group_m, "USE_TMA": self.tma, "PERSISTENT": self.persistent}


_T = TileConfig
_HIP = (("matrix_instr_nonkdim", 16),)  # 16x16 MFMA: the usual best on CDNA2/3

#: NVIDIA configs (Hopper first, valid on Ampere). Order matters only where no tuning
#: happens (small problems): the first config that passes :func:`configs_for` runs.
#: ``_T(BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M, num_warps, num_stages, tma, persistent)``.
CUDA_CONFIGS: list[TileConfig] = [
    # Small M (decode-like, M <= 32): memory-bound on b. Narrow N tiles give >= 1 program
    # per SM; a deep K step keeps enough bytes in flight to stream b at full bandwidth.
    _T(16, 32, 256, 8, 4, 4),
    _T(16, 64, 128, 8, 4, 5),
    _T(16, 64, 256, 8, 4, 4),
    _T(16, 128, 128, 8, 4, 4),
    _T(16, 64, 128, 8, 4, 5, tma=True),
    _T(32, 64, 128, 8, 4, 4),
    _T(32, 128, 128, 8, 4, 4, tma=True),
    # Medium M (64..512): enough tiles to fill ~132 SMs before tiles get large.
    _T(64, 64, 128, 8, 4, 4),
    _T(128, 32, 128, 8, 4, 4),
    _T(64, 128, 64, 8, 4, 4),
    _T(64, 128, 64, 8, 4, 4, tma=True),
    _T(128, 64, 64, 8, 4, 4, tma=True),
    # Large tiles: compute-bound problems. 128x256x64 with 8 warps (two warpgroups, each
    # a wgmma m64n256 per K step) is the classic Hopper shape; 128x128 at 3 stages
    # (96 KiB) fits two programs per SM, which hides one's prologue and epilogue under
    # the other's main loop. Persistent variants overlap them within one program.
    _T(128, 256, 64, 8, 8, 3, tma=True),
    _T(128, 256, 64, 8, 8, 4, tma=True),
    _T(256, 128, 64, 8, 8, 3, tma=True),
    _T(128, 128, 64, 8, 8, 3, tma=True),
    _T(128, 128, 64, 8, 8, 4, tma=True),
    _T(128, 128, 128, 8, 8, 3, tma=True),
    _T(64, 256, 64, 8, 4, 4, tma=True),
    _T(128, 256, 64, 8, 8, 3, tma=True, persistent=True),
    _T(128, 256, 64, 8, 8, 4, tma=True, persistent=True),
    _T(128, 128, 64, 8, 8, 4, tma=True, persistent=True),
    # Pointer variants of the large tiles: Ampere, and layouts TMA cannot describe.
    _T(128, 256, 64, 8, 8, 3),
    _T(256, 128, 64, 8, 8, 3),
    _T(128, 128, 64, 8, 4, 4),
    _T(64, 256, 32, 8, 4, 4),
    _T(128, 64, 32, 8, 4, 4),
    _T(128, 256, 32, 8, 8, 3),  # these two also fit fp32 (tf32) tiles in shared memory
    _T(128, 128, 32, 8, 4, 4),
    # Exact fp32 (FMA, no tensor cores) and small fallbacks: short K steps.
    _T(64, 64, 32, 8, 4, 3),
    _T(32, 64, 32, 8, 4, 3),
    _T(16, 64, 32, 8, 4, 3),
]

#: AMD (ROCm) configs: the stream pipeliner wants num_stages=2, and CDNA's 64 KiB of LDS
#: per CU favours larger BLOCK_K over deeper pipelines. ``matrix_instr_nonkdim`` and
#: ``waves_per_eu`` are compile options of Triton's AMD backend (HIPOptions).
HIP_CONFIGS: list[TileConfig] = [
    _T(16, 64, 256, 8, 4, 2, options=_HIP + (("waves_per_eu", 2),)),
    _T(16, 128, 128, 8, 4, 2, options=_HIP + (("waves_per_eu", 2),)),
    _T(32, 64, 256, 8, 4, 2, options=_HIP + (("waves_per_eu", 2),)),
    _T(64, 64, 128, 8, 4, 2, options=_HIP + (("waves_per_eu", 2),)),
    _T(64, 128, 128, 8, 4, 2, options=_HIP + (("waves_per_eu", 2),)),
    _T(128, 128, 64, 8, 4, 2, options=_HIP + (("waves_per_eu", 2),)),
    _T(128, 128, 128, 8, 8, 2, options=_HIP + (("waves_per_eu", 1),)),
    _T(256, 128, 64, 8, 8, 2, options=_HIP + (("waves_per_eu", 1),)),
    _T(128, 256, 64, 8, 8, 2, options=_HIP + (("waves_per_eu", 1),)),
    _T(256, 256, 64, 4, 8, 2, options=_HIP + (("waves_per_eu", 1),)),
    _T(64, 64, 32, 8, 4, 2),
    _T(32, 64, 32, 8, 4, 2),
]

#: Under the interpreter: no tuning (each program is simulated in numpy), one small tile,
#: loaded through pointers, or through (emulated) TMA descriptors where the call asks.
INTERPRETER_CONFIGS = [_T(32, 32, 32, 4, 4, 1), _T(32, 32, 32, 4, 4, 1, tma=True)]
#: The config a failed tuning run falls back to: pointer loads, modest resources.
SAFE_CONFIG = _T(64, 64, 32, 8, 4, 3)
#: Problems with at most this many multiply-adds (batch * M * N * K) skip tuning.
AUTOTUNE_MIN_WORK = 1 << 24


@functools.lru_cache(maxsize=4096)  # consulted on every untuned (small) call
def configs_for(m: int, n: int, k: int, dtype: torch.dtype, *, platform: str = "cuda",
                tma: bool = False, exact_fp32: bool = True, max_shared_mem: int | None = None,
                num_sms: int | None = None, batch: int = 1) -> tuple[TileConfig, ...]:
    """The configs worth trying for one problem, in list order; never empty.

    Drops configs whose tile is far larger than the problem (``BLOCK_M`` beyond M's
    next power of two, and so on), small tiles on large problems, tilings that would
    leave most SMs idle, configs that do not fit in shared memory, TMA configs where
    TMA is unavailable (``tma=False``), persistent ones with no more tiles than SMs,
    and for exact fp32 (FMA, no tensor cores) long K steps and big tiles. If nothing
    survives, the smallest config that fits remains.
    """
    table = platform_configs(platform)
    elem = torch.empty((), dtype=dtype).element_size()
    m_cap, n_cap, k_cap = (max(16, next_pow2(x)) for x in (m, n, k))

    def smem(c):
        # Pipelined operand buffers; AMD's stream pipeliner keeps num_stages - 1 in LDS.
        stages = max(1, c.num_stages - 1) if platform == "hip" else c.num_stages
        return stages * (c.block_m + c.block_n) * c.block_k * elem

    fitting = [c for c in table
               if (tma or not c.tma)
               and (max_shared_mem is None or smem(c) <= max_shared_mem)
               and not (dtype is torch.float32 and exact_fp32
                        and (c.block_k > 32 or c.block_m * c.block_n > 128 * 64 or c.tma))]
    if not fitting:  # only when shared memory is tiny: take the smallest tile
        return (min(table, key=lambda c: (c.tma, smem(c))),)

    def tiles(c):
        return batch * -(-m // c.block_m) * -(-n // c.block_n)

    chosen = [c for c in fitting
              if c.block_m <= m_cap and c.block_n <= n_cap and c.block_k <= k_cap
              # Small tiles on large problems re-read the operands many times over, and
              # short K steps on small tiles (the fp32 fallbacks) starve tensor cores.
              and c.block_m >= min(64, m // 8)
              and not (m >= 256 and c.block_n < min(64, n // 8))
              and not (elem == 2 and k >= 512 and c.block_k < 64
                       and c.block_m * c.block_n <= 64 * 64)]
    if num_sms and chosen:
        # Keep tilings that occupy at least a quarter of what the best one occupies;
        # persistence only matters with more tiles than SMs.
        best = min(num_sms, max(tiles(c) for c in chosen))
        chosen = [c for c in chosen if 4 * tiles(c) >= best
                  and not (c.persistent and tiles(c) <= num_sms)]
    return tuple(chosen) or (min(fitting, key=lambda c: (c.block_m * c.block_n * c.block_k,
                                                          c.tma)),)


def platform_configs(platform: str) -> list[TileConfig]:
    """The table of a platform: ``"hip"`` (ROCm), else NVIDIA's."""
    return HIP_CONFIGS if platform == "hip" else CUDA_CONFIGS


def first_tma_config(platform: str) -> TileConfig:
    """What ``tma=True`` runs when no TMA config suits the problem's size."""
    return next(c for c in platform_configs(platform) if c.tma)


