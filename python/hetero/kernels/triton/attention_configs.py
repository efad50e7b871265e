"""Flash attention's tuning configs, as data, the resource model that prunes them for a
problem, and the :class:`~.launch.Tuning` of each kernel (``attention.py``: the forward
kernel; ``attention_backward.py``: the backward kernels; ``launch.py`` runs them).

Tiles: forward, ``BLOCK_M`` query rows per program and ``BLOCK_N`` keys per step;
backward dk/dv, ``BLOCK_N`` keys per program and ``BLOCK_M`` queries per step; backward
dq, ``BLOCK_M`` queries per program and ``BLOCK_N`` keys per step.
"""

from __future__ import annotations

from typing import NamedTuple

from . import gpu_platform
from .launch import Tuning

#: False: run the first configuration of each table that fits, untuned (tests, quick
#: runs: tuning compiles and times every configuration once per key). Read on each call.
AUTOTUNE = True


class BlockConfig(NamedTuple):
    """One point of the tuning space (a :class:`~.launch.Config`)."""

    block_m: int
    block_n: int
    num_warps: int
    num_stages: int
    options: tuple = ()  # extra backend compile options, (name, value) pairs

    def meta(self) -> dict:
        """The kernels' tuned meta-parameters (constexprs)."""
        return {"BLOCK_M": self.block_m, "BLOCK_N": self.block_n}


_B = BlockConfig

# ``_B(BLOCK_M, BLOCK_N, num_warps, num_stages)``. Order matters where no tuning happens
# (AUTOTUNE off): the first config that fits runs.
FWD_CONFIGS = {  # measured on H100 (bf16, D=128): first two are the fastest
    "cuda": [_B(128, 64, 8, 3), _B(64, 64, 4, 3), _B(128, 128, 8, 2), _B(128, 64, 8, 2),
             _B(128, 32, 4, 4), _B(64, 32, 4, 2), _B(128, 64, 4, 3)],
    "hip": [_B(128, 64, 4, 2), _B(128, 32, 4, 2), _B(64, 64, 4, 2), _B(64, 32, 4, 1)],
}
BWD_DKDV_CONFIGS = {
    "cuda": [_B(64, 128, 8, 3), _B(32, 64, 4, 4), _B(64, 128, 8, 2), _B(32, 128, 8, 3),
             _B(32, 64, 4, 2), _B(16, 64, 4, 2), _B(32, 64, 8, 2), _B(16, 32, 4, 2)],
    "hip": [_B(32, 128, 8, 2), _B(64, 64, 4, 2), _B(32, 64, 4, 1), _B(16, 64, 4, 1),
            _B(16, 32, 4, 1)],
}
BWD_DQ_CONFIGS = {
    "cuda": [_B(128, 64, 8, 3), _B(64, 32, 4, 3), _B(128, 64, 8, 2), _B(64, 64, 4, 3),
             _B(128, 32, 8, 3), _B(64, 32, 4, 2), _B(128, 32, 4, 4)],
    "hip": [_B(128, 32, 4, 2), _B(64, 64, 4, 2), _B(64, 32, 4, 1)],
}
#: Under the interpreter: no tuning (each program is simulated in numpy), one small tile.
INTERPRETER_CONFIGS = [_B(16, 16, 4, 1)]
SMEM_BYTES = {"cuda": 220 * 1024, "hip": 64 * 1024}  # Hopper allows 227 KiB per block
ACC_FLOATS_PER_THREAD = 160  # float32 accumulator + score-tile budget per thread


def config_fits(kind: str, num_warps: int, num_stages: int, resident: int, per_stage: int,
                elem_bytes: int, acc_floats: int) -> bool:
    """Whether a configuration plausibly fits a ``kind`` GPU: ``resident`` elements
    (the tiles a program keeps: q, or k and v) plus ``num_stages`` buffers of
    ``per_stage`` streamed elements in shared memory, and ``acc_floats`` float32
    accumulator/score elements spread over the program's threads (beyond the budget
    they spill to local memory)."""
    smem = (resident + max(num_stages, 1) * per_stage) * elem_bytes
    threads = (32 if kind == "cuda" else 64) * num_warps
    return smem <= SMEM_BYTES[kind] and acc_floats <= ACC_FLOATS_PER_THREAD * threads


# What each kernel's program keeps (resident), streams (per stage) and accumulates; ``args``
# are the launch's named arguments (``BLOCK_D``/``BLOCK_DV``: the padded head dims).

def fwd_fits(c: BlockConfig, args) -> bool:
    d, dv = args["BLOCK_D"], args["BLOCK_DV"]
    return config_fits(gpu_platform(), c.num_warps, c.num_stages, resident=c.block_m * d,
                       per_stage=c.block_n * (d + dv), elem_bytes=args["Q"].element_size(),
                       acc_floats=c.block_m * (dv + c.block_n))


def dkdv_fits(c: BlockConfig, args) -> bool:
    d, dv = args["BLOCK_D"], args["BLOCK_DV"]
    return config_fits(gpu_platform(), c.num_warps, c.num_stages,
                       resident=c.block_n * (d + dv), per_stage=c.block_m * (d + dv),
                       elem_bytes=args["Q"].element_size(),
                       acc_floats=c.block_n * (d + dv + c.block_m))


def dq_fits(c: BlockConfig, args) -> bool:
    d, dv = args["BLOCK_D"], args["BLOCK_DV"]
    return config_fits(gpu_platform(), c.num_warps, c.num_stages,
                       resident=c.block_m * (d + dv), per_stage=c.block_n * (d + dv),
                       elem_bytes=args["Q"].element_size(),
                       acc_floats=c.block_m * (d + c.block_n))


def pruner(fits):
    """A :attr:`~.launch.Tuning.prune` rule keeping the configs ``fits`` accepts (the
    smallest tile if it accepts none)."""

    def prune(configs, args):
        kept = [c for c in configs if fits(c, args)]
        return kept or [min(configs, key=lambda c: c.block_m * c.block_n)]

    return prune


# The autotuning keys: sequence-length buckets (``SQ_KEY``, ``SK_KEY``: next powers of
# two), head dims, causality, mask kind, dot precision (and the dtypes, which triton
# adds); the backward kernels also the GQA group size.
FWD = Tuning(name="attention forward", tables=FWD_CONFIGS, interpreter=INTERPRETER_CONFIGS,
             keys=("SQ_KEY", "SK_KEY", "HEAD_D", "HEAD_DV", "CAUSAL", "MASK_KIND",
                   "PRECISION", "STORE_LSE"),
             prune=pruner(fwd_fits))
_BWD_KEYS = ("SQ_KEY", "SK_KEY", "group", "HEAD_D", "HEAD_DV", "CAUSAL", "MASK_KIND",
             "PRECISION")
BWD_DKDV = Tuning(name="attention backward dk/dv", tables=BWD_DKDV_CONFIGS,
                  interpreter=INTERPRETER_CONFIGS, keys=_BWD_KEYS, prune=pruner(dkdv_fits))
BWD_DQ = Tuning(name="attention backward dq", tables=BWD_DQ_CONFIGS,
                interpreter=INTERPRETER_CONFIGS, keys=_BWD_KEYS, prune=pruner(dq_fits))
