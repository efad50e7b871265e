"""What a measurement on this machine depends on: its fingerprint.

A tuned table (measured kernel choices) is only as good as the machine it was measured
on. The fingerprint names everything that changes which kernel is fastest: the CPU's
model and the instruction sets it has, the GPUs, the threads the CPU kernels use, and
the versions of torch, triton, hetero and of hetero's compiled kernels (a hash of the
native modules and the Triton sources). A table from another fingerprint is ignored,
with the reason.
"""

from __future__ import annotations

import hashlib
import json
import platform
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import torch

from . import env

#: CPU features that decide which kernels exist and how fast they run.
ISA_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_bf16",
             "avx512_fp16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve",
             "bf16")


@lru_cache(maxsize=None)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    model, flags = platform.processor() or platform.machine(), frozenset()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                name, _, value = line.partition(":")
                name = name.strip()
                if name in ("model name", "Model", "Hardware") and value.strip():
                    model = value.strip()
                elif name in ("flags", "Features") and not flags:
                    flags = frozenset(value.split())
    except OSError:
        pass
    return model, flags


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what ``platform`` knows."""
    return _cpuinfo()[0]


def cpu_flags() -> list[str]:
    """The CPU's instruction-set flags among :data:`ISA_FLAGS`, sorted."""
    return sorted(_cpuinfo()[1] & set(ISA_FLAGS))


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@lru_cache(maxsize=None)
def kernel_source_hash() -> str:
    """sha256 (16 hex digits) of hetero's compiled modules and Triton kernel sources."""
    root = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted([*root.glob("_C*.so"), *root.glob("_C*.pyd"),
                        *(root / "kernels" / "triton").glob("*.py")]):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def gpus() -> list[str]:
    """``"name (arch)"`` of each GPU torch sees (empty without one)."""
    if not torch.cuda.is_available():
        return []
    found = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        arch = getattr(props, "gcnArchName", None) or f"sm_{props.major}{props.minor}"
        found.append(f"{props.name} ({arch})")
    return found


def current() -> dict:
    """This machine's fingerprint (the thread count as the CPU kernels read it now)."""
    return {"cpu": cpu_model(), "isa": cpu_flags(), "gpus": gpus(),
            "threads": env.settings().num_threads or torch.get_num_threads(),
            "torch": torch.__version__,
            "triton": _version("triton"), "hetero": _version("hetero"),
            "kernels": kernel_source_hash()}


def digest(fingerprint: dict) -> str:
    """A short name for a fingerprint (12 hex digits), e.g. for file names."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:12]


def differences(theirs: dict, ours: dict) -> list[str]:
    """What differs between two fingerprints, in words."""
    return [f"{key} {theirs.get(key)!r} here {ours.get(key)!r}"
            for key in sorted(set(theirs) | set(ours)) if theirs.get(key) != ours.get(key)]
