"""Flash attention's tuning configs, as data, and the resource model that prunes them
for a problem (``attention.py``: the forward kernel and the launcher that tunes;
``attention_backward.py``: the backward kernels).

A config is ``(BLOCK_M, BLOCK_N, num_warps, num_stages)``. Forward: BLOCK_M query rows
per program, BLOCK_N keys per step. Backward dk/dv: BLOCK_N keys per program, BLOCK_M
queries per step; backward dq: BLOCK_M queries per program, BLOCK_N keys per step.
"""

from __future__ import annotations

import triton

from . import gpu_platform

FWD_CONFIGS = {  # measured on H100 (bf16, D=128): first two are the fastest
    "cuda": [(128, 64, 8, 3), (64, 64, 4, 3), (128, 128, 8, 2), (128, 64, 8, 2),
             (128, 32, 4, 4), (64, 32, 4, 2), (128, 64, 4, 3)],
    "hip": [(128, 64, 4, 2), (128, 32, 4, 2), (64, 64, 4, 2), (64, 32, 4, 1)],
}
BWD_DKDV_CONFIGS = {
    "cuda": [(64, 128, 8, 3), (32, 64, 4, 4), (64, 128, 8, 2), (32, 128, 8, 3),
             (32, 64, 4, 2), (16, 64, 4, 2), (32, 64, 8, 2), (16, 32, 4, 2)],
    "hip": [(32, 128, 8, 2), (64, 64, 4, 2), (32, 64, 4, 1), (16, 64, 4, 1), (16, 32, 4, 1)],
}
BWD_DQ_CONFIGS = {
    "cuda": [(128, 64, 8, 3), (64, 32, 4, 3), (128, 64, 8, 2), (64, 64, 4, 3),
             (128, 32, 8, 3), (64, 32, 4, 2), (128, 32, 4, 4)],
    "hip": [(128, 32, 4, 2), (64, 64, 4, 2), (64, 32, 4, 1)],
}
INTERPRETER_CONFIG = (16, 16, 4, 1)
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

def fwd_fits(config, args):
    m, n = config.kwargs["BLOCK_M"], config.kwargs["BLOCK_N"]
    d, dv = args["BLOCK_D"], args["BLOCK_DV"]
    return config_fits(gpu_platform(), config.num_warps, config.num_stages, resident=m * d,
                       per_stage=n * (d + dv), elem_bytes=args["Q"].element_size(),
                       acc_floats=m * (dv + n))


def dkdv_fits(config, args):
    m, n = config.kwargs["BLOCK_M"], config.kwargs["BLOCK_N"]
    d, dv = args["BLOCK_D"], args["BLOCK_DV"]
    return config_fits(gpu_platform(), config.num_warps, config.num_stages,
                       resident=n * (d + dv), per_stage=m * (d + dv),
                       elem_bytes=args["Q"].element_size(), acc_floats=n * (d + dv + m))


def dq_fits(config, args):
    m, n = config.kwargs["BLOCK_M"], config.kwargs["BLOCK_N"]
    d, dv = args["BLOCK_D"], args["BLOCK_DV"]
    return config_fits(gpu_platform(), config.num_warps, config.num_stages,
                       resident=m * (d + dv), per_stage=n * (d + dv),
                       elem_bytes=args["Q"].element_size(), acc_floats=m * (d + n))


def pruner(table_fits):
    """An autotune ``early_config_prune`` keeping the configs ``table_fits`` accepts
    (the smallest one if it accepts none)."""

    def prune(configs, named_args, **kwargs):
        args = {**named_args, **kwargs}
        kept = [c for c in configs if table_fits(c, args)]
        return kept or [min(configs, key=lambda c: c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"])]

    return prune


def make_configs(table):
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s)
            for m, n, w, s in table]


def head_block(d: int) -> int:
    return max(16, triton.next_power_of_2(d))
